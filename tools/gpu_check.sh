#!/usr/bin/env bash
# GPU readiness check (docs/benchmarks.md#gpu-check-toolsgpu_checksh): on a machine with a CUDA
# GPU, runs the test suite's CUDA-marked tests (tests/test_cuda.py), every benchmark of
# `make bench` with --device cuda at the fewest repeats the harness allows (5), and the memory
# benchmark on the VSE demo, and writes one report. Under 8 minutes on one GPU: each part has
# its own time limit, and a part that runs out is reported as such.
#
#   tools/gpu_check.sh [REPORT]     (default: outputs/gpu_check_report.md; `make gpu-check`)
#   PY=/path/to/python tools/gpu_check.sh
# Exit code: 0 all passed, 1 a test/benchmark failed or timed out, 2 no CUDA GPU visible.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
REPORT=${1:-outputs/gpu_check_report.md}
mkdir -p "$(dirname "$REPORT")"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1
BENCH_ARGS='--device cuda --repeats 5 --warmup 1'
status=0

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch sees no CUDA GPU; nothing to check." >&2
    exit 2
fi

section() { printf '\n## %s\n\n' "$1" >>"$REPORT"; }
# run LIMIT_S TITLE CMD...: the command's output goes into the report as a code block.
run() {
    local limit=$1 title=$2 start code
    shift 2
    section "$title"
    echo "\`$*\` (limit ${limit} s)" >>"$REPORT"
    start=$(date +%s)
    timeout "$limit" "$@" >/tmp/gpu_check_part.log 2>&1
    code=$?
    { echo; echo '```'; tail -n 200 /tmp/gpu_check_part.log; echo '```'; } >>"$REPORT"
    echo "exit code $code after $(($(date +%s) - start)) s$([ $code = 124 ] && echo ' (TIMED OUT)')" >>"$REPORT"
    [ $code = 0 ] || status=1
    echo "gpu_check: $title: exit $code" >&2
}

{
    echo "# GPU check report"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | paste -sd ';' || echo 'not available')"
    "$PY" - <<'PY'
import platform, torch
print(f'- torch.cuda.get_device_name(0): {torch.cuda.get_device_name(0)}; {torch.cuda.device_count()} GPU(s)')
print(f'- capability {torch.cuda.get_device_capability(0)}; bf16 supported: {torch.cuda.is_bf16_supported()}')
print(f'- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, '
      f'NCCL {".".join(map(str, torch.cuda.nccl.version()))}, Python {platform.python_version()}')
PY
} >"$REPORT"

run 120 'CUDA tests (pytest -m cuda)' "$PY" -m pytest -q -m cuda -rfEs tests/test_cuda.py
# The scripts of `make bench` (its recipe, STAMP= skips the install step), one time limit each
# so that one slow script cannot take the others' time.
mapfile -t BENCHES < <(make -n --no-print-directory bench STAMP= PY="$PY" BENCH_ARGS="$BENCH_ARGS")
for cmd in "${BENCHES[@]}"; do
    run 45 "make bench: ${cmd#"$PY" }" bash -c "$cmd"
done
run 50 'Memory, VSE demo on the GPU (300 iterations)' "$PY" benchmarks/benchmark_memory.py --device cuda --demos vse --iters 300

section 'Result'
echo "$([ $status = 0 ] && echo 'all parts passed' || echo 'SOME PARTS FAILED (see exit codes above)')" >>"$REPORT"
echo "gpu_check: report in $REPORT"
exit $status
