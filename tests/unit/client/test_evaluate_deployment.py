"""`catdog evaluate-deployment`, unit level: the metrics and the report from fixed answers
(cross-checked with scikit-learn and numpy), the gate and the exit status against a fake API
through the `catdog` command's own parser, and the MLflow lookup and run.
(The run against the live local stack is an integration test.)"""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from client import cli
from client import deployment_report as dr
from client import evaluate_deployment as ed
from client.api import CatdogClient
from common.offline_metrics import (
    OfflineMetricsUnavailableError,
    fetch_offline_metrics,
    fetch_over_rest,
)

CLASSES = ("cat", "dog")


def outcome(
    actual: str, predicted: str | None, p_dog: float = 0.5, error: str | None = None
) -> dr.Outcome:
    if predicted is None:
        return dr.Outcome("x.jpg", actual, error=error or "truncated")
    probability = p_dog if predicted == "dog" else 1 - p_dog
    return dr.Outcome("x.jpg", actual, predicted, probability, p_dog, "catdog", "3")


FIXED = [
    outcome("cat", "cat", 0.1),
    outcome("cat", "cat", 0.3),
    outcome("cat", "dog", 0.7),
    outcome("cat", "cat", 0.3),  # a tie with the second
    outcome("dog", "dog", 0.9),
    outcome("dog", "dog", 0.6),
    outcome("dog", "cat", 0.4),
    outcome("dog", None, error="not_an_image"),
]


# --- metrics --------------------------------------------------------------------------------


def test_metrics_match_scikit_learn() -> None:
    metrics = dr.classification_metrics(FIXED)
    done = [o for o in FIXED if o.classified]
    y_true = [CLASSES.index(o.actual) for o in done]
    y_pred = [CLASSES.index(o.predicted or "") for o in done]
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1])
    for i, name in enumerate(CLASSES):
        assert metrics[f"precision_{name}"] == pytest.approx(precision[i])
        assert metrics[f"recall_{name}"] == pytest.approx(recall[i])
        assert metrics[f"f1_{name}"] == pytest.approx(f1[i])
        assert metrics[f"support_{name}"] == support[i]
    assert metrics["f1_macro"] == pytest.approx(np.mean(f1))
    assert metrics["accuracy"] == pytest.approx(5 / 7)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y_true, [o.p_dog for o in done]))
    assert (metrics["sent"], metrics["n"], metrics["failed"]) == (8, 7, 1)
    assert metrics["error_rate"] == pytest.approx(1 / 8)
    assert metrics["predicted_cat_share"] == pytest.approx(4 / 7)


def test_confusion_matrix_rows_are_actual_and_columns_predicted() -> None:
    assert dr.confusion_matrix(FIXED) == [[3, 1], [1, 2]]


@pytest.mark.parametrize("q", [0, 50, 90, 95, 99, 100])
def test_percentiles_match_numpy(q: int) -> None:
    values = [12.0, 3.5, 7.25, 100.0, 41.0, 8.0, 9.5]
    assert dr.percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_gate_fails_below_the_accuracy_threshold_or_above_the_error_rate() -> None:
    metrics = dr.classification_metrics(FIXED)  # accuracy 0.714, 12.5 % failed
    assert dr.gate(metrics, 0.7, 0.2) == []
    assert "accuracy 0.7143 is below 0.9000" in dr.gate(metrics, 0.9, 0.2)[0]
    assert "12.50% of the photos failed" in dr.gate(metrics, 0.7, 0.05)[0]
    assert dr.gate(dr.classification_metrics([outcome("cat", None)]), 0.5, 1.0) == [
        "no photo was classified"
    ]


def test_an_item_becomes_an_outcome() -> None:
    ok = {
        "index": 0,
        "status": "succeeded",
        "label": "dog",
        "probability": 0.8,
        "probabilities": {"cat": 0.2, "dog": 0.8},
        "model": {"name": "catdog", "version": "3"},
    }
    bad = {"index": 1, "status": "failed", "error": {"reason": "truncated", "message": "x"}}
    assert dr.outcome_from_item("a.jpg", "cat", ok) == dr.Outcome(
        "a.jpg", "cat", "dog", 0.8, 0.8, "catdog", "3"
    )
    assert dr.outcome_from_item("b.jpg", "dog", bad).error == "truncated"


# --- against a fake API ------------------------------------------------------------------------


class FakeApi:
    """POST /jobs, GET /jobs/{id} (paged) and POST /predict, answering by file name: the
    name's class, except `wrong` names (the other class) and `broken` ones (failed)."""

    def __init__(self, wrong: set[str], broken: set[str], version: str = "3") -> None:
        self.wrong, self.broken, self.version = wrong, broken, version
        self.jobs: dict[str, list[str]] = {}
        self.rejections_left = 1  # the first submit gets a 429, as from a full queue

    def answer(self, filename: str) -> tuple[str, float]:
        truth = "cat" if filename.startswith("c") else "dog"
        label = ("dog" if truth == "cat" else "cat") if filename in self.wrong else truth
        return label, 0.9

    def item(self, index: int, filename: str) -> dict[str, Any]:
        if filename in self.broken:
            return {
                "index": index,
                "filename": filename,
                "status": "failed",
                "error": {"reason": "truncated", "message": "truncated"},
            }
        label, p = self.answer(filename)
        return {
            "index": index,
            "filename": filename,
            "status": "succeeded",
            "label": label,
            "probability": p,
            "probabilities": {label: p, ("dog" if label == "cat" else "cat"): 1 - p},
            "model": {"name": "catdog", "version": self.version},
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/jobs":
            if self.rejections_left:
                self.rejections_left -= 1
                return httpx.Response(429, json={"detail": "full", "reason": "queue_full"})
            names = re.findall(rb'filename="([^"]+)"', request.read())
            job_id = f"job{len(self.jobs)}"
            self.jobs[job_id] = [n.decode() for n in names]
            return httpx.Response(
                202,
                json={
                    "job_id": job_id,
                    "status": "queued",
                    "status_url": f"/jobs/{job_id}",
                    "total": len(names),
                },
            )
        if request.method == "GET" and path.startswith("/jobs/"):
            names = self.jobs[path.rsplit("/", 1)[1]]
            offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
            items = [self.item(i, n) for i, n in enumerate(names)][offset : offset + limit]
            end = offset + len(items)
            return httpx.Response(
                200,
                json={
                    "job_id": "x",
                    "status": "succeeded",
                    "total": len(names),
                    "done": len(names),
                    "failed": 0,
                    "results": {
                        "offset": offset,
                        "limit": limit,
                        "items": items,
                        "next_offset": end if end < len(names) else None,
                    },
                },
            )
        if request.method == "POST" and path == "/predict":
            return httpx.Response(
                200,
                json={
                    "label": "cat",
                    "probability": 0.9,
                    "latency_ms": 21.5,
                    "model": {"name": "catdog", "version": self.version},
                },
            )
        return httpx.Response(404, json={"detail": "no", "reason": "not_found"})


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "eval"
    for label, prefix in (("Cat", "c"), ("Dog", "d")):
        (folder / label).mkdir(parents=True)
        for i in range(5):
            (folder / label / f"{prefix}{i}.jpg").write_bytes(b"photo bytes")
    return folder


def evaluate(api: FakeApi, folder: Path, out: Path, *options: str) -> int:
    args = cli.build_parser().parse_args(
        [
            "evaluate-deployment",
            "--url",
            "http://catdog.test",
            "--data",
            str(folder),
            "--out",
            str(out),
            "--job-size",
            "4",
            "--latency-samples",
            "3",
            "--poll",
            "0",
            *options,
        ]
    )
    with CatdogClient(args.url, transport=httpx.MockTransport(api)) as client:
        return ed.run(client, args, sleep=lambda _: None)


NO_MLFLOW = ("--mlflow-tracking-uri", "http://127.0.0.1:1")


def test_a_good_deployment_passes_and_writes_its_report(photo_folder: Path, tmp_path: Path) -> None:
    api = FakeApi(wrong={"d4.jpg"}, broken={"c4.jpg"})
    out = tmp_path / "report"
    code = evaluate(
        api, photo_folder, out, "--min-accuracy", "0.85", "--max-error-rate", "0.2", *NO_MLFLOW
    )
    assert code == 0
    assert len(api.jobs) == 3  # 10 photos in jobs of 4, after one 429
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["live"]["accuracy"] == pytest.approx(8 / 9)
    assert metrics["confusion_matrix"] == [[4, 0], [1, 4]]
    assert metrics["model_version"] == "3"
    report = (out / "report.md").read_text()
    assert report.startswith("# Deployment evaluation: catdog version 3: PASS")
    assert "| accuracy | 0.8889 | n/a |" in report
    assert "![confusion matrix](confusion_matrix.png)" in report
    assert "| truncated | 1 |" in report
    assert "| client round trip | 3 |" in report and "| gateway (latency_ms) | 3 | 21.5" in report
    assert "Offline metrics: not available (MLflow is unreachable" in report
    assert "not logged: MLflow at http://127.0.0.1:1 is unreachable" in report
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "predictions.csv").read_text().splitlines()) == 11


def test_accuracy_below_the_threshold_exits_1(photo_folder: Path, tmp_path: Path) -> None:
    api = FakeApi(wrong={"d3.jpg", "d4.jpg"}, broken=set())
    assert evaluate(api, photo_folder, tmp_path / "r", "--min-accuracy", "0.9", *NO_MLFLOW) == 1
    assert "FAIL" in (tmp_path / "r" / "report.md").read_text().splitlines()[0]


def test_too_many_failed_photos_exit_1(photo_folder: Path, tmp_path: Path) -> None:
    api = FakeApi(wrong=set(), broken={"c0.jpg", "c1.jpg"})
    assert evaluate(api, photo_folder, tmp_path / "r", "--min-accuracy", "0.5", *NO_MLFLOW) == 1


def test_a_folder_without_labelled_photos_exits_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert evaluate(FakeApi(set(), set()), tmp_path / "empty", tmp_path / "r", *NO_MLFLOW) == 2


def test_the_cli_options_ci_passes_exist() -> None:
    # deploy/evaluate.sh runs: python -m client evaluate-deployment --url U --data D --min-accuracy X
    argv = ["evaluate-deployment", "--url", "http://u", "--data", "/eval-data", "--min-accuracy"]
    args = cli.build_parser().parse_args([*argv, "0.90"])
    assert (args.url, args.data, args.min_accuracy) == ("http://u", Path("/eval-data"), 0.9)
    assert args.run is ed.run


# --- MLflow ----------------------------------------------------------------------------------


def test_offline_metrics_over_rest() -> None:
    def mlflow(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/model-versions/get"):
            assert dict(request.url.params) == {"name": "catdog", "version": "3"}
            return httpx.Response(200, json={"model_version": {"run_id": "r1"}})
        assert request.url.params["run_id"] == "r1"
        metrics = [
            {"key": "test_accuracy", "value": 0.97},
            {"key": "final_loss", "value": 0.1},
            {"key": "test_support_cat", "value": 10},
            {"key": "test_support_dog", "value": 10},
            {"key": "test_recall_cat", "value": 1.0},
            {"key": "test_recall_dog", "value": 0.9},
        ]
        return httpx.Response(200, json={"run": {"data": {"metrics": metrics}}})

    found = fetch_over_rest(
        "http://mlflow:5000", "catdog", "3", transport=httpx.MockTransport(mlflow)
    )
    assert found.run_id == "r1" and found.accuracy == 0.97
    assert "loss" not in found.metrics
    assert found.predicted_cat_share == pytest.approx(0.55)
    assert found.mean_confidence is None


def test_offline_metrics_refuse_a_checkpoint_version() -> None:
    with pytest.raises(OfflineMetricsUnavailableError, match="not a registry version"):
        fetch_offline_metrics("http://mlflow:5000", "catdog", "file:best.pt")


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A SQLite tracking store with a registered version whose run has test metrics."""
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("catdog"))
    for key, value in {"test_accuracy": 0.95, "test_f1_macro": 0.94, "test_n": 200}.items():
        client.log_metric(run.info.run_id, key, value)
    client.create_registered_model("catdog")
    client.create_model_version("catdog", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    yield uri, run.info.run_id


@pytest.mark.slow
def test_the_run_is_logged_to_mlflow_and_linked_to_the_model_version(
    photo_folder: Path, tmp_path: Path, mlflow_store: tuple[str, str]
) -> None:
    from mlflow import MlflowClient

    uri, training_run = mlflow_store
    api = FakeApi(wrong=set(), broken=set(), version="1")
    out = tmp_path / "r"
    assert evaluate(api, photo_folder, out, "--mlflow-tracking-uri", uri) == 0
    report = (out / "report.md").read_text()
    assert f"test set of training run `{training_run}`" in report
    assert "| accuracy | 1.0000 | 0.9500 | +0.0500 |" in report
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("catdog-deployment").experiment_id])
    assert run.data.tags["model_version"] == "1"
    assert run.data.tags["model_name"] == "catdog"
    assert run.data.tags["model_run_id"] == training_run
    assert run.data.metrics["live_accuracy"] == 1.0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "confusion_matrix.png", "metrics.json", "predictions.csv"} <= artifacts
    tags = client.get_model_version("catdog", "1").tags
    assert tags["deployment_evaluation_run_id"] == run.info.run_id
    assert f"logged as run `{run.info.run_id}`" in report
