"""The gateway's metrics: each app has its own registry; the middleware counts requests by
route template, bytes received and rejections by reason; /metrics reads queue depth, ready
workers and live quality from a real Redis; /feedback moves the live-accuracy gauge.

The app is the real `create_app`, which installs the monitoring middleware and includes the
/metrics and /feedback routers."""

from collections.abc import Iterator

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from common import quality as q
from common.errors import FeedbackConflictError, PredictionNotFoundError
from common.quality import PredictionRecord
from common.settings import Settings
from common.store.ops import Store
from common.wire import ModelRef
from gateway.app import create_app
from gateway.errors import STATUS_BY_ERROR
from gateway.monitoring.metrics import GatewayMetrics
from gateway.monitoring.middleware import MetricsMiddleware, rejection_reason, route_label
from gateway.monitoring.quality import QualityTracker


def monitored_app(redis_url: str) -> FastAPI:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        redis_url=redis_url,
        environment="test",
        auth="off",
        mlflow_tracking_uri="http://127.0.0.1:1",  # no MLflow: offline values stay unknown
    )
    return create_app(settings, configure_logs=False)


@pytest.fixture
def client(redis_url: str) -> Iterator[TestClient]:
    with TestClient(monitored_app(redis_url)) as test_client:
        yield test_client


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_two_apps_in_one_process_count_separately(redis_url: str) -> None:
    first, second = monitored_app(redis_url), monitored_app(redis_url)
    with TestClient(first) as a, TestClient(second) as b:
        a.get("/livez")
        a.get("/livez")
        b.get("/livez")
        counted = "catdog_gateway_requests_total"
        route = {"route": "/livez", "method": "GET", "status": "200"}
        assert value(samples(a), counted, **route) == 2
        assert value(samples(b), counted, **route) == 1


def test_requests_are_counted_by_route_template_not_raw_path(client: TestClient) -> None:
    client.get("/jobs/abc123")  # 404 job_not_found
    client.get("/no/such/path")
    found = samples(client)
    assert (
        value(
            found,
            "catdog_gateway_requests_total",
            route="/jobs/{job_id}",
            method="GET",
            status="404",
        )
        == 1
    )
    assert (
        value(found, "catdog_gateway_requests_total", route="unmatched", method="GET", status="404")
        == 1
    )
    assert (
        value(
            found,
            "catdog_gateway_request_duration_seconds_count",
            route="/jobs/{job_id}",
            method="GET",
        )
        == 1
    )


def test_rejections_are_counted_with_their_reason_and_uploads_with_their_bytes(
    client: TestClient,
) -> None:
    body = b"not an image at all"
    response = client.post("/predict", files={"file": ("x.jpg", body, "image/jpeg")})
    assert response.status_code in (415, 422), response.text
    reason = response.json()["reason"]
    found = samples(client)
    assert (
        value(
            found,
            "catdog_gateway_rejections_total",
            status=str(response.status_code),
            reason=reason,
        )
        == 1
    )
    assert value(found, "catdog_gateway_upload_size_bytes_count", route="/predict") == 1
    assert value(found, "catdog_gateway_upload_size_bytes_sum", route="/predict") > len(body)
    assert value(found, "catdog_gateway_requests_in_flight") == 1  # the scrape itself


def test_metrics_read_queue_depth_and_ready_workers_from_redis(
    client: TestClient, redis_url: str
) -> None:
    redis.Redis.from_url(redis_url).rpush("bulk", "t1", "t2", "t3")
    found = samples(client)
    assert value(found, "catdog_gateway_queue_depth", queue="bulk") == 3
    assert value(found, "catdog_gateway_queue_depth", queue="realtime") == 0
    assert value(found, "catdog_gateway_ready_workers", queue="realtime") == 0
    assert value(found, "catdog_gateway_redis_up") == 1


def test_feedback_moves_the_live_accuracy_gauge(client: TestClient, redis_url: str) -> None:
    Store(redis.Redis.from_url(redis_url))(
        q.record_predictions(
            [
                PredictionRecord(
                    "predict:11111111111111111111111111111111", "cat", 0.9, ModelRef("catdog", "3")
                ),
                PredictionRecord(
                    "predict:22222222222222222222222222222222", "cat", 0.7, ModelRef("catdog", "3")
                ),
            ],
            ttl_s=60,
            window=100,
        )
    )
    live = {"model_name": "catdog", "model_version": "3", "source": "live"}
    right = client.post(
        "/feedback", json={"prediction_id": "11111111111111111111111111111111", "label": "cat"}
    )
    assert right.status_code == 200, right.text
    assert right.json()["correct"] is True
    assert value(samples(client), "catdog_quality_accuracy_ratio", **live) == 1.0
    wrong = client.post(
        "/feedback", json={"prediction_id": "22222222222222222222222222222222", "label": "DOG"}
    )
    assert wrong.json() | {"model": None} == {
        "prediction": "predict:22222222222222222222222222222222",
        "predicted": "cat",
        "label": "dog",
        "correct": False,
        "counted": True,
        "model": None,
        "window_accuracy": 0.5,
        "window_size": 2,
    }
    found = samples(client)
    assert value(found, "catdog_quality_accuracy_ratio", **live) == 0.5
    assert (
        value(
            found,
            "catdog_gateway_feedback_total",
            model_name="catdog",
            model_version="3",
            outcome="wrong",
        )
        == 1
    )


def test_feedback_errors_have_stable_reasons(client: TestClient, redis_url: str) -> None:
    missing = client.post(
        "/feedback", json={"prediction_id": "ffffffffffffffffffffffffffffffff", "label": "cat"}
    )
    assert (missing.status_code, missing.json()["reason"]) == (404, "prediction_not_found")
    both = client.post(
        "/feedback",
        json={
            "prediction_id": "11111111111111111111111111111111",
            "job_id": "j",
            "index": 0,
            "label": "cat",
        },
    )
    assert (both.status_code, both.json()["reason"]) == (422, "validation_error")
    horse = client.post(
        "/feedback", json={"prediction_id": "11111111111111111111111111111111", "label": "horse"}
    )
    assert horse.status_code == 422
    Store(redis.Redis.from_url(redis_url))(
        q.record_predictions(
            [PredictionRecord("job:j1:0", "dog", 0.9, ModelRef("catdog", "3"))],
            ttl_s=60,
            window=100,
        )
    )
    assert (
        client.post("/feedback", json={"job_id": "j1", "index": 0, "label": "cat"}).status_code
        == 200
    )
    conflict = client.post("/feedback", json={"job_id": "j1", "index": 0, "label": "dog"})
    assert (conflict.status_code, conflict.json()["reason"]) == (409, "feedback_conflict")


def test_a_scrape_while_redis_is_down_still_answers() -> None:
    app = monitored_app("redis://127.0.0.1:1/0")
    with TestClient(app) as down:
        found = samples(down)
    assert value(found, "catdog_gateway_redis_up") == 0


def test_the_tracker_is_built_once_per_app(client: TestClient) -> None:
    client.get("/metrics")
    tracker = client.app.state.quality  # type: ignore[attr-defined]
    client.get("/metrics")
    assert isinstance(tracker, QualityTracker) and client.app.state.quality is tracker  # type: ignore[attr-defined]


def test_create_app_wires_monitoring_once(redis_url: str) -> None:
    app = monitored_app(redis_url)
    assert [m.cls for m in app.user_middleware].count(MetricsMiddleware) == 1
    paths = app.openapi()["paths"]
    assert "get" in paths["/metrics"] and "post" in paths["/feedback"]
    assert (STATUS_BY_ERROR[PredictionNotFoundError], STATUS_BY_ERROR[FeedbackConflictError]) == (
        404,
        409,
    )


def test_route_label_and_rejection_reason_helpers() -> None:
    assert route_label({"type": "http"}) == "unmatched"
    assert rejection_reason(b'{"detail": "x", "reason": "too_large"}') == "too_large"
    assert rejection_reason(b"<html>413</html>") == "unknown"
    assert rejection_reason(b'{"detail": "x"}') == "unknown"


def test_observing_a_prediction_fills_the_label_counter_and_probability_histogram() -> None:
    m = GatewayMetrics()
    m.observe_prediction("dog", 0.93, "catdog", "3")
    m.observe_worker_wait("realtime", 0.05)
    m.observe_job_submitted(files=12)
    text = m.exposition()[0].decode()
    assert (
        'catdog_gateway_predictions_total{label="dog",model_name="catdog",model_version="3"} 1.0'
        in text
    )
    assert 'catdog_gateway_prediction_probability_bucket{label="dog",le="0.95"} 1.0' in text
    assert 'catdog_gateway_prediction_probability_bucket{label="dog",le="0.9"} 0.0' in text
    assert "catdog_gateway_job_files_total 12.0" in text
