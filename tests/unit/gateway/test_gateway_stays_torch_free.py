"""The gateway image has no torch: importing its app (or the torch-free entry points of the
worker and the client) must never import it, directly or through common/. The Celery worker's
main process imports `worker.tasks` before it forks its pool: torch-free there means no
torch (and no CUDA) state is ever forked; each child loads the model itself."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "module",
    [
        "gateway.main",
        "gateway.app",
        "common.jobstore",
        "common.messaging",
        "client.cli",
        "worker.celery_app",
        "worker.tasks",
        "worker.healthcheck",
        "worker.reload",
    ],
)
def test_importing_does_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; assert 'torch' not in sys.modules, sorted(sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
