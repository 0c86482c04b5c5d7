"""POST /predict: one photo, answered by a worker through the realtime queue."""

import logging
import time
import uuid

from fastapi import APIRouter, Request

from common.errors import InferenceFailedError, PredictTimeoutError, error_for_reason
from common.store import predict_mailbox
from gateway.dependencies import CallerDep, RequestIdDep, ServicesDep
from gateway.monitoring import MetricsDep
from gateway.openapi import error_responses, multipart_body
from gateway.schemas import PredictResponse
from gateway.uploads import read_single_file

log = logging.getLogger(__name__)

router = APIRouter(tags=["predict"])

PREDICT_BODY = multipart_body(
    {"file": {"type": "string", "format": "binary", "description": "One JPEG/PNG/WEBP/... photo"}},
    ["file"],
)


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=error_responses(401, 413, 415, 422, 429, 503, 504, 507),
    openapi_extra=PREDICT_BODY,
)
async def predict(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    request_id: RequestIdDep,
    metrics: MetricsDep,
) -> PredictResponse:
    """Classify one photo (multipart field `file`) as cat or dog."""
    started = time.perf_counter()
    settings = services.settings
    upload = await read_single_file(request, "file", settings.max_image_bytes)
    services.validate_image(upload.data)
    await services.ensure_capacity(settings.realtime_queue, len(upload.data))
    await services.ensure_worker(settings.realtime_queue)

    prediction_id = uuid.uuid4().hex
    store = services.store
    queued = time.perf_counter()
    await services.dispatcher.predict(prediction_id, upload.data, request_id, caller.key_id)
    waiting = predict_mailbox.await_reply(prediction_id, settings.predict_timeout_s)
    reply = await services.waits(waiting)
    metrics.observe_worker_wait(settings.realtime_queue, time.perf_counter() - queued)
    if reply is None:
        await store(predict_mailbox.abandon(prediction_id))
        raise PredictTimeoutError(
            f"no worker answered within {settings.predict_timeout_s:g} s; try again later"
        )
    if reply.error is not None:
        raise error_for_reason(reply.error.reason, reply.error.message)
    if reply.prediction is None:
        raise InferenceFailedError("the worker answered without a prediction")

    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    found = reply.prediction
    model = found.model
    metrics.observe_prediction(found.label, found.probability, model.name, model.version)
    log.info(
        "prediction served",
        extra={
            "route": "/predict",
            "prediction_id": prediction_id,
            "model_name": model.name,
            "model_version": model.version,
            "label": found.label,
            "probability": round(found.probability, 6),
            "latency_ms": latency_ms,
            "upload_name": upload.filename,
        },
    )
    return PredictResponse(
        label=found.label,
        probability=found.probability,
        probabilities=found.probabilities,
        pet_probability=found.pet_probability,
        pet_detected=found.pet_detected,
        model=model,
        prediction_id=prediction_id,
        request_id=request_id,
        latency_ms=latency_ms,
    )
