"""GET /metrics: Prometheus metrics in the text exposition format."""

from fastapi import APIRouter, Response

from gateway.dependencies import ServicesDep, SettingsDep
from gateway.monitoring import MetricsDep, QualityDep
from gateway.monitoring.metrics import refresh_from_redis

router = APIRouter(tags=["monitoring"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(
    services: ServicesDep, settings: SettingsDep, metrics: MetricsDep, quality: QualityDep
) -> Response:
    """Prometheus metrics: requests, latency, predictions, queues, workers, live quality."""
    queues = [settings.realtime_queue, settings.bulk_queue]
    await refresh_from_redis(metrics, services.store, queues, quality)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
