"""The monitoring code runs in the gateway image (no torch, no mlflow) and in the evaluation
container: importing it must pull in neither."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MODULES = [
    "gateway.metrics",
    "gateway.quality",
    "gateway.monitoring",
    "gateway.routes.metrics",
    "gateway.routes.feedback",
    "common.quality",
    "common.offline_metrics",
    "worker.metrics",
    "client.evaluate_deployment",
]
# One interpreter for all: the first module that pulls in a heavy package is named.
PROBE = """
import importlib, json, sys
for module in sys.argv[1:]:
    importlib.import_module(module)
    heavy = [m for m in ("torch", "mlflow") if m in sys.modules]
    if heavy:
        print(json.dumps([module, heavy]))
        break
else:
    print(json.dumps(None))
"""


def test_importing_the_monitoring_modules_pulls_in_neither_torch_nor_mlflow() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *MODULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) is None, result.stdout
