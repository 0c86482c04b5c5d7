"""Liveness and readiness probes."""

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from common.store import workers
from gateway.dependencies import ServicesDep, SettingsDep
from gateway.schemas import Liveness, Readiness, WorkerInfo

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=Liveness)
async def livez() -> Liveness:
    """The process is up and its event loop answers (no dependency is checked)."""
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Redis or a queue's workers missing"}},
)
async def readyz(services: ServicesDep, settings: SettingsDep) -> JSONResponse:
    """Ready when Redis answers and each queue has a worker with a loaded model."""
    try:
        await services.redis.ping()
        heartbeats = await services.store(workers.live())
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        body = Readiness(status="not_ready", detail=f"Redis does not answer: {exc}")
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    verdict = workers.readiness(heartbeats, [settings.realtime_queue, settings.bulk_queue])
    body = Readiness(
        status="ready" if verdict.ok else "not_ready",
        detail=verdict.detail,
        workers=[
            WorkerInfo(
                worker_id=hb.worker_id,
                queues=hb.queues,
                state=hb.state,
                device=hb.device,
                model=hb.model,
            )
            for hb in heartbeats
        ],
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if verdict.ok else 503)
