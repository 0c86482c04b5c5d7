"""The gateway's monitoring: Prometheus metrics (`metrics`), the request-id, access-log and
counting middlewares (`middleware`), live quality from feedback (`quality`), and here how they
are wired into an app, with the dependencies the /metrics and /feedback routes take.

Its dependencies are `async def` so FastAPI calls them on the event loop rather than in a
thread (gateway/dependencies.py says why). `create_app` calls `install_monitoring(app)` once;
the lifespan may set `app.state.quality = build_quality_tracker(services)`, and if it does
not, the first route that needs the tracker builds it from `app.state.services`.
"""

from typing import Annotated

from fastapi import Depends, FastAPI, Request

from gateway.monitoring.metrics import GatewayMetrics
from gateway.monitoring.middleware import MetricsMiddleware
from gateway.monitoring.quality import QualityConfig, QualityTracker, ReferenceCache
from gateway.services import Services


def install_monitoring(app: FastAPI, metrics: GatewayMetrics | None = None) -> GatewayMetrics:
    """A fresh registry for this app on `app.state.metrics`, and the middleware that counts
    every request into it."""
    metrics = metrics or GatewayMetrics()
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware)
    return metrics


def build_quality_tracker(services: Services) -> QualityTracker:
    settings = services.settings
    config = QualityConfig.from_settings(settings)
    references = ReferenceCache.from_tracking_uri(settings.mlflow_tracking_uri, config)
    return QualityTracker(services.store, config, references)


async def get_metrics(request: Request) -> GatewayMetrics:
    metrics = getattr(request.app.state, "metrics", None)
    if not isinstance(metrics, GatewayMetrics):
        # An app built without install_monitoring still answers /metrics (without the
        # per-request counts, which need the middleware).
        metrics = request.app.state.metrics = GatewayMetrics()
    return metrics


async def get_quality(request: Request) -> QualityTracker:
    tracker = getattr(request.app.state, "quality", None)
    if not isinstance(tracker, QualityTracker):
        tracker = build_quality_tracker(request.app.state.services)
        request.app.state.quality = tracker
    return tracker


MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
QualityDep = Annotated[QualityTracker, Depends(get_quality)]
