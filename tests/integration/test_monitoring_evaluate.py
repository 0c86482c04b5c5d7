"""`python -m client evaluate-deployment` against the live local stack, on real labelled photos
copied from ../shared/data/kaggle-dogs-vs-cats: it writes its report and confusion matrix and
exits 0 when the gate holds, 1 when the threshold is above the accuracy the stack reached.

The fixture model is weak, so the gate is set from the accuracy measured, not a fixed bar."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import KAGGLE, MODEL_VERSION, OFFLINE_METRICS
from tests.integration.processes import REPO_ROOT, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def evaluate(stack: Stack, data: Path, out: Path, min_accuracy: float, mlflow_url: str) -> int:
    argv = [sys.executable, "-m", "client", "evaluate-deployment", "--url", stack.url]
    argv += ["--data", str(data), "--min-accuracy", str(min_accuracy), "--out", str(out)]
    # Offline metrics, and the evaluation run, go to the stack's own MLflow server.
    argv += ["--mlflow-tracking-uri", mlflow_url, "--latency-samples", "5", "--poll", "0.2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATDOG_")}
    result = subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return result.returncode


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 Kaggle photos (10 cats, 10 dogs) labelled by their names, copied from the share."""
    folder = tmp_path_factory.mktemp("eval-data")
    for animal in ("cat", "dog"):
        for i in range(100, 110):
            shutil.copy(KAGGLE / f"{animal}.{i}.jpg", folder / f"{animal}.{i}.jpg")
    return folder


def test_evaluate_deployment_reports_on_the_live_stack_and_gates_on_the_threshold(
    stack: Stack, labelled: Path, tmp_path: Path, mlflow_url: str
) -> None:
    out = tmp_path / "report"
    assert evaluate(stack, labelled, out, 0.0, mlflow_url) == 0
    report = (out / "report.md").read_text()
    png = (out / "confusion_matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["passed"] is True and metrics["model_version"] == MODEL_VERSION
    assert metrics["live"]["sent"] == 20 and metrics["live"]["n"] == 20
    assert sum(map(sum, metrics["confusion_matrix"])) == 20
    assert metrics["offline"]["accuracy"] == OFFLINE_METRICS["accuracy"]
    assert metrics["predict_latency_ms"]["n"] == 5
    assert f"# Deployment evaluation: catdog version {MODEL_VERSION}: PASS" in report
    assert "![confusion matrix](confusion_matrix.png)" in report
    assert "| accuracy |" in report and "p95" in report

    accuracy = metrics["live"]["accuracy"]
    too_high = tmp_path / "too-high"
    assert evaluate(stack, labelled, too_high, accuracy + 0.01, mlflow_url) == 1
    failed = json.loads((too_high / "metrics.json").read_text())
    assert failed["passed"] is False and "below" in failed["failures"][0]
    assert "FAIL" in (too_high / "report.md").read_text().splitlines()[0]
