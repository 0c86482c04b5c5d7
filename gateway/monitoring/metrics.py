"""The gateway's Prometheus metrics, served at GET /metrics.

One `GatewayMetrics` per app, on its own `CollectorRegistry` (not the process-wide default):
tests build many apps in one process, and each must start from zero without "duplicated
timeseries" errors; in production there is one app per process, so nothing is lost. The
gateway runs as a single uvicorn process, so no multiprocess mode is needed here.

Three kinds of numbers:

- events the gateway sees (requests, uploads, rejections, predictions, waits, jobs), counted
  as they happen: `MetricsMiddleware` does the per-request ones, routes call `observe_*`;
- state that lives in Redis (queue depth, ready workers, live quality), read at each scrape
  by `refresh_from_redis` so every gateway replica reports the same truth;
- nothing else: no label ever takes a client-chosen value (routes are templates, reasons are
  our stable error codes), so cardinality stays bounded.

Names follow Prometheus conventions: base units (seconds, bytes), `_total` on counters.
"""

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from common.store import queues as queue_store
from common.store import workers as worker_registry
from common.store.ops import AsyncStore
from common.wire import Heartbeat

if TYPE_CHECKING:
    from gateway.monitoring.quality import QualityTracker, VersionQuality

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = tuple(float(2**n) for n in range(10, 30, 2))  # 1 KiB .. 128 MiB, x4
PROBABILITY_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "catdog_gateway_requests",
            "HTTP requests answered, by route template, method and status code",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "catdog_gateway_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "catdog_gateway_requests_in_flight", "Requests being handled now", registry=r
        )
        self.upload = Histogram(
            "catdog_gateway_upload_size_bytes",
            "Request body bytes received, by route template",
            ["route"],
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.rejections = Counter(
            "catdog_gateway_rejections",
            "Requests refused as the client's fault or for load (413, 415, 422, 429), by reason",
            ["status", "reason"],
            registry=r,
        )
        self.predictions = Counter(
            "catdog_gateway_predictions",
            "/predict answers served, by label and model version",
            ["label", "model_name", "model_version"],
            registry=r,
        )
        self.probability = Histogram(
            "catdog_gateway_prediction_probability",
            "Winning probability of /predict answers, by label",
            ["label"],
            buckets=PROBABILITY_BUCKETS,
            registry=r,
        )
        self.worker_wait = Histogram(
            "catdog_gateway_worker_wait_seconds",
            "Time a /predict waited for a worker's answer after queuing its task",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.jobs_submitted = Counter(
            "catdog_gateway_jobs_submitted", "Bulk jobs accepted", registry=r
        )
        self.job_files = Counter(
            "catdog_gateway_job_files", "Files received in accepted bulk jobs", registry=r
        )
        self.feedback = Counter(
            "catdog_gateway_feedback",
            "Feedback received on served predictions, by model version and outcome",
            ["model_name", "model_version", "outcome"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "catdog_gateway_queue_depth",
            "Tasks waiting in each Celery queue (read from Redis at scrape time)",
            ["queue"],
            registry=r,
        )
        self.ready_workers = Gauge(
            "catdog_gateway_ready_workers",
            "Worker processes with a loaded model serving each queue (from their heartbeats)",
            ["queue"],
            registry=r,
        )
        self.redis_up = Gauge(
            "catdog_gateway_redis_up",
            "1 when Redis answered the last scrape's reads, else 0",
            registry=r,
        )
        self.quality_accuracy = Gauge(
            "catdog_quality_accuracy_ratio",
            "Accuracy per model version: source=live over the feedback window,"
            " source=offline on its test set (MLflow)",
            ["model_name", "model_version", "source"],
            registry=r,
        )
        self.quality_cat_share = Gauge(
            "catdog_quality_cat_share_ratio",
            "Share of answers that are `cat`: source=live over the prediction window,"
            " source=offline on the test set",
            ["model_name", "model_version", "source"],
            registry=r,
        )
        self.quality_mean_probability = Gauge(
            "catdog_quality_mean_probability_ratio",
            "Mean winning probability: source=live over the prediction window,"
            " source=offline on the test set",
            ["model_name", "model_version", "source"],
            registry=r,
        )
        self.quality_drift = Gauge(
            "catdog_quality_drift_ratio",
            "Live minus offline value, by signal (accuracy, cat_share, mean_probability)",
            ["model_name", "model_version", "signal"],
            registry=r,
        )
        self.quality_window = Gauge(
            "catdog_quality_window_samples",
            "Samples in the sliding windows behind the live values (window=feedback|predictions)",
            ["model_name", "model_version", "window"],
            registry=r,
        )

    # --- events ------------------------------------------------------------------------------

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def observe_upload(self, route: str, size_bytes: int) -> None:
        self.upload.labels(route).observe(size_bytes)

    def observe_rejection(self, status: int, reason: str) -> None:
        self.rejections.labels(str(status), reason).inc()

    def observe_prediction(
        self, label: str, probability: float, model_name: str, model_version: str
    ) -> None:
        self.predictions.labels(label, model_name, model_version).inc()
        self.probability.labels(label).observe(probability)

    def observe_worker_wait(self, queue: str, seconds: float) -> None:
        self.worker_wait.labels(queue).observe(seconds)

    def observe_job_submitted(self, files: int) -> None:
        self.jobs_submitted.inc()
        self.job_files.inc(files)

    def observe_feedback(self, model_name: str, model_version: str, correct: bool) -> None:
        self.feedback.labels(model_name, model_version, "correct" if correct else "wrong").inc()

    # --- state read from Redis ---------------------------------------------------------------

    def set_queue_depths(self, depths: Mapping[str, int]) -> None:
        for queue, depth in depths.items():
            self.queue_depth.labels(queue).set(depth)

    def set_ready_workers(self, heartbeats: Sequence[Heartbeat], queues: Iterable[str]) -> None:
        """Same rule as /readyz: a live process with a loaded model that consumes the queue."""
        for queue in queues:
            ready = sum(1 for hb in heartbeats if hb.serves(queue))
            self.ready_workers.labels(queue).set(ready)

    def set_quality(self, versions: Sequence["VersionQuality"]) -> None:
        # Versions that left the top `max_models` disappear instead of freezing at old values.
        for gauge in (
            self.quality_accuracy,
            self.quality_cat_share,
            self.quality_mean_probability,
            self.quality_drift,
            self.quality_window,
        ):
            gauge.clear()
        for v in versions:
            name, version = v.model.name, v.model.version
            for source, values in (("live", v.live()), ("offline", v.offline())):
                for gauge, signal in (
                    (self.quality_accuracy, "accuracy"),
                    (self.quality_cat_share, "cat_share"),
                    (self.quality_mean_probability, "mean_probability"),
                ):
                    value = values[signal]
                    if value is not None:
                        gauge.labels(name, version, source).set(value)
            for signal, delta in v.drift().items():
                self.quality_drift.labels(name, version, signal).set(delta)
            self.quality_window.labels(name, version, "feedback").set(len(v.stats.outcomes))
            self.quality_window.labels(name, version, "predictions").set(len(v.stats.predictions))

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


async def refresh_from_redis(
    metrics: GatewayMetrics,
    store: AsyncStore,
    queues: Sequence[str],
    quality: "QualityTracker | None" = None,
) -> None:
    """Read queue depths, worker heartbeats and live quality into the gauges. Never raises:
    a scrape while Redis is down still answers, with catdog_gateway_redis_up 0."""
    try:
        metrics.set_queue_depths({q: await store(queue_store.depth(q)) for q in queues})
        metrics.set_ready_workers(await store(worker_registry.live()), queues)
        if quality is not None:
            metrics.set_quality(await quality.snapshot())
    except (redis.RedisError, OSError) as exc:
        metrics.redis_up.set(0)
        log.warning("metrics: Redis unavailable", extra={"error": str(exc)})
        return
    metrics.redis_up.set(1)
