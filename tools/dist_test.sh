#!/usr/bin/env bash
# Evaluate CHECKPOINT on NPROC processes of this machine with torchrun (gloo without a GPU);
# extra arguments go to tools/test.py.
#   bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [--out results.json] [--data-root DIR]
# Interpreter: PYTHON=/path/to/python (default: <repo>/.venv/bin/python if present, else python3).
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as environment variables.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NPROC [test.py options]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
TOOLS=$(cd "$(dirname "$0")" && pwd)
# The interpreter: $PYTHON if set, else the repository's .venv if there is one, else python3
# (an activated environment's, since PATH decides).
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$TOOLS/../.venv/bin/python" ]; then
        PYTHON="$TOOLS/../.venv/bin/python"
    else
        PYTHON=python3
    fi
fi
PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
