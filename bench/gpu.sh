#!/usr/bin/env bash
# The GPU harness (bench/gpu.py) on a machine with a GPU, from what bench/gpu_prepare.sh put
# in .gpu/: about 3 minutes on an H200. Results under $OUT (the device tool's folder) or
# bench/results/, the stack's logs beside them as a tarball.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu
OUT_DIR=${OUT:-bench/results}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/catdog-site "$CARRY"/whl/*.whl
export PYTHONPATH=/tmp/catdog-site PATH="$PWD/$CARRY/redis:$PATH" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
status=0
python3 bench/gpu.py --model "$CARRY"/model/checkpoint.pt --photos "$CARRY"/photos \
  --commit "$(cat "$CARRY"/commit)" --logs /tmp/catdog-gpu-logs "$@" || status=$?
cp bench/results/*-gpu-* "$OUT_DIR"/ 2>/dev/null || true
tar -czf "$OUT_DIR"/gpu-logs.tgz -C /tmp catdog-gpu-logs 2>/dev/null || true
exit "$status"
