"""Prometheus metrics on the live local stack (real Redis, a Celery worker with two prefork
children, uvicorn): the gateway's /metrics and the worker's exporter change as requests are
made, the exporter merges every pool process, and every metric the Grafana dashboard and the
alert rules query is really exported once traffic has flowed."""

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image
from prometheus_client.samples import Sample

from tests.integration.conftest import MODEL_NAME, MODEL_VERSION
from tests.integration.processes import Stack, scrape, total, wait_for_job
from tests.unit.deploy.test_dashboard_metric_names import (
    FLOWER_METRICS,
    PROMETHEUS_METRICS,
    alert_expressions,
    dashboard_expressions,
    metric_names,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MB = 1024 * 1024
MODEL = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION}

# Queried but not expected from the stack after ordinary traffic, each for a stated reason:
NOT_EXPORTED_HERE = {
    # Flower's own metrics: Flower runs in compose and `make up`, not in the test stack.
    *FLOWER_METRICS,
    # Prometheus's own series (`up`, `ALERTS`, ...): only Prometheus has them.
    *PROMETHEUS_METRICS,
    # Failure-only: a task gives up after five model-load retries or every callback attempt
    # (tens of seconds each); counted by tests/unit/worker and the worker's task_failure hook.
    "catdog_worker_task_failures_total",
}


def _photo(photo_dir: Path, name: str) -> tuple[str, bytes, str]:
    path = photo_dir / "kaggle" / name
    return (path.name, path.read_bytes(), "image/jpeg")


def _delta(before: list[Sample], after: list[Sample], name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def test_gateway_metrics_move_as_requests_are_made(
    stack: Stack, client: httpx.Client, photo_dir: Path
) -> None:
    metrics_url = f"{stack.url}/metrics"
    before = scrape(metrics_url)
    ok = client.post("/predict", files={"file": _photo(photo_dir, "cat.3.jpg")})
    assert ok.status_code == 200, ok.text
    label = ok.json()["label"]
    bad = client.post("/predict", files={"file": ("bad.jpg", b"\xff\xd8\xff not a photo", "")})
    assert bad.status_code == 422, bad.text
    after = scrape(metrics_url)

    predict = {"route": "/predict", "method": "POST"}
    assert _delta(before, after, "catdog_gateway_requests_total", **predict, status="200") == 1
    assert _delta(before, after, "catdog_gateway_requests_total", **predict, status="422") == 1
    assert _delta(before, after, "catdog_gateway_request_duration_seconds_count", **predict) == 2
    assert _delta(before, after, "catdog_gateway_upload_size_bytes_count", route="/predict") == 2
    reason = bad.json()["reason"]
    assert (
        _delta(before, after, "catdog_gateway_rejections_total", status="422", reason=reason) == 1
    )
    assert _delta(before, after, "catdog_gateway_predictions_total", label=label, **MODEL) == 1
    assert _delta(before, after, "catdog_gateway_prediction_probability_count", label=label) == 1
    assert _delta(before, after, "catdog_gateway_worker_wait_seconds_count", queue="realtime") == 1
    depths = {s.labels["queue"] for s in after if s.name == "catdog_gateway_queue_depth"}
    assert depths == {"realtime", "bulk"}
    assert total(after, "catdog_gateway_ready_workers", queue="realtime") == 2
    assert total(after, "catdog_gateway_redis_up") == 1


def test_the_worker_exporter_merges_both_pool_processes_after_traffic(
    stack: Stack, client: httpx.Client, photo_dir: Path
) -> None:
    exporter = stack.worker("w1").metrics_url
    assert exporter is not None
    before = scrape(exporter)
    for name in ("dog.3.jpg", "cat.4.jpg"):
        assert client.post("/predict", files={"file": _photo(photo_dir, name)}).status_code == 200
    names = [f"{animal}.{i}.jpg" for animal in ("cat", "dog") for i in range(5, 8)]
    accepted = client.post("/jobs", files=[("files", _photo(photo_dir, n)) for n in names])
    assert accepted.status_code == 202, accepted.text
    assert wait_for_job(client, accepted.json()["job_id"])["status"] == "succeeded"
    after = scrape(exporter)

    assert _delta(before, after, "catdog_worker_predictions_total", **MODEL) == 2 + 6
    assert (
        _delta(before, after, "catdog_worker_images_total", queue="bulk", outcome="predicted") == 6
    )
    assert _delta(before, after, "catdog_worker_batch_size_sum", queue="bulk") == 6
    assert _delta(before, after, "catdog_worker_batch_size_count", queue="realtime") == 2
    assert _delta(before, after, "catdog_worker_inference_seconds_count", queue="bulk") == 6
    assert _delta(before, after, "catdog_worker_queue_wait_seconds_count", queue="realtime") == 2
    assert _delta(before, after, "catdog_worker_queue_wait_seconds_count", queue="bulk") == 6
    assert _delta(before, after, "catdog_worker_prediction_probability_count") == 8
    assert _delta(before, after, "catdog_worker_jobs_finished_total", status="succeeded") == 1
    # Each child loaded the model; the exporter in the main process sees both of them.
    assert total(after, "catdog_worker_model_info", **MODEL, device="cpu") == 2
    assert total(after, "catdog_worker_model_load_seconds_count", outcome="ok") >= 2


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def exported(stack: Stack, photo_dir: Path) -> set[str]:
    """Sample names of the gateway and the worker after every kind of ordinary traffic:
    answers, refusals (413, 415, 422), a job with a corrupt item, a job refused whole at
    upload, and feedback."""
    with stack.client() as http:
        ok = http.post("/predict", files={"file": _photo(photo_dir, "dog.8.jpg")})
        assert ok.status_code == 200, ok.text
        refused = {
            422: ("bad.jpg", b"\xff\xd8\xff not a photo", "image/jpeg"),
            415: ("doc.pdf", b"%PDF-1.4\n" + b"0" * 200, "application/pdf"),
            413: ("huge.png", b"\x89PNG" + b"\0" * (10 * MB), "image/png"),
        }
        for status, upload in refused.items():
            assert http.post("/predict", files={"file": upload}).status_code == status
        good = _photo(photo_dir, "cat.8.jpg")
        truncated = ("cut.jpg", good[1][: len(good[1]) // 2], "image/jpeg")
        job = http.post("/jobs", files=[("files", good), ("files", truncated)])
        assert job.status_code == 202, job.text
        assert wait_for_job(http, job.json()["job_id"])["failed"] == 1
        oversized = http.post(
            "/jobs", files=[("files", ("huge.png", refused[413][1], "image/png"))]
        )
        assert oversized.json()["status"] == "failed"  # refused whole, ended by the gateway
        label = ok.json()["label"]
        feedback = {"prediction_id": ok.json()["prediction_id"], "label": label}
        assert http.post("/feedback", json=feedback).status_code == 200
    samples = scrape(f"{stack.url}/metrics")
    exporter = stack.worker("w1").metrics_url
    assert exporter is not None
    samples += scrape(exporter)
    return {s.name for s in samples}


EXPRESSIONS = [("dashboard", *e) for e in dashboard_expressions()] + [
    ("alerts", *e) for e in alert_expressions()
]


@pytest.mark.parametrize(
    ("where", "name", "expr"), EXPRESSIONS, ids=[f"{w}: {n}" for w, n, _ in EXPRESSIONS]
)
def test_every_queried_metric_is_exported_by_the_running_stack(
    exported: set[str], where: str, name: str, expr: str
) -> None:
    missing = metric_names(expr) - exported - NOT_EXPORTED_HERE
    assert not missing, f"{where} '{name}' queries series the stack does not export: {missing}"


def test_the_exemptions_are_still_queried() -> None:
    # An exemption nobody queries any more would hide nothing; keep the list honest.
    queried = set().union(*(metric_names(e) for _, _, e in EXPRESSIONS))
    assert "catdog_worker_task_failures_total" in queried
