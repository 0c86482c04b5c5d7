#!/usr/bin/env bash
# The whole suite: lint, type checks, the dependency and secret audits, then pytest (unit,
# data, model, integration, browser, pipeline). Integration and browser tests start their
# own redis-server, Celery workers and uvicorn on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true DVC_NO_ANALYTICS=1

echo "== ruff"
ruff check .
echo "== mypy"
mypy
echo "== pip-audit (known vulnerabilities; security/audit-exceptions.txt)"
python scripts/audit_dependencies.py
echo "== detect-secrets (against .secrets.baseline)"
python scripts/scan_secrets.py
echo "== pytest"
# Two pytest-xdist workers, each handed whole files (loadfile), so a module's own stack is
# started once; CATDOG_TEST_WORKERS=0 runs everything in this one process. The fifteen
# slowest tests are listed at the end, so a run that got slower says where.
python -m pytest -n "${CATDOG_TEST_WORKERS:-2}" --dist loadfile --durations 15 "$@"
