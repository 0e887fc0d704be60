#!/usr/bin/env bash
# Train on NPROC processes of this machine (one per GPU, or CPU processes with gloo when no
# GPU is visible) with torchrun; extra arguments go to tools/train.py.
#   bash tools/dist_train.sh CONFIG NPROC [--work-dir DIR] [--amp] [--cfg-options ...]
# Interpreter: PYTHON=/path/to/python (default: <repo>/.venv/bin/python if present, else python3).
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as environment variables.
# The config's batch_size is per process: the global batch is NPROC x batch_size.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NPROC [train.py options]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
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
    "$TOOLS/train.py" "$CONFIG" --launcher pytorch "$@"
