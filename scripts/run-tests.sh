#!/usr/bin/env bash
# The whole suite: lint, type checks, then pytest (unit, data, model, integration).
# Integration tests start their own redis-server, Celery workers and uvicorn on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true DVC_NO_ANALYTICS=1

echo "== ruff"
ruff check .
echo "== mypy"
mypy
echo "== pytest"
python -m pytest "$@"
