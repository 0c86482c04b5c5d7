"""The body of the /predict task, as a plain function of a store and an engine (testable
without Celery): read the upload, decode it, classify it, push the answer for the waiting
gateway together with the answer's live-quality record (so POST /feedback can name it). In
a threaded realtime worker many of these run at once and the engine
(`worker.engine.BatchedEngine`) gathers their images into shared forward passes."""

import logging
import time
from collections.abc import Callable

from common.errors import CatDogError, PredictTimeoutError
from common.imaging import ImageLimits, decode_image
from common.quality import PredictionRecord, QualityConfig, prediction_key
from common.store import predict_mailbox
from common.store.ops import Store
from common.wire import Classification, ItemError, PredictReply
from worker import metrics
from worker.forward import Engine, elapsed_ms, observe_prediction, observe_queue_wait

log = logging.getLogger(__name__)


def serve_prediction(
    store: Store,
    engine_of: Callable[[], Engine],
    pid: str,
    limits: ImageLimits,
    *,
    queue: str = "realtime",
    enqueued_at: float | None = None,
    deadline: float | None = None,
    owner: str = "",
    quality: QualityConfig | None = None,
) -> PredictReply | None:
    """Predict the image stored under `pid` and push the answer; None when nobody waits.

    `deadline` (a `time.time()`) is the task's soft time limit: past it the item fails with
    `timeout` instead of waiting on for a forward pass (see `tasks.predict`). `owner` is the
    API key that asked: only it may give feedback on the answer.
    """
    started = time.perf_counter()
    record: PredictionRecord | None = None
    observe_queue_wait(queue, enqueued_at, 1)
    data = store(predict_mailbox.take_image(pid))
    if data is None:  # the gateway gave up (timeout) or the image expired
        log.warning("prediction abandoned before it ran", extra={"prediction_id": pid})
        return None
    try:
        engine = engine_of()
        image = decode_image(data, limits).image
        # The engine counts its forward passes: with micro-batching one pass answers many.
        found = engine.predict([image], timeout_s=_time_left(deadline))[0]
    except CatDogError as exc:
        reply = PredictReply(error=ItemError(reason=exc.reason, message=exc.message))
        metrics.observe_item_failure(queue, exc.reason)
        log.warning(
            "prediction failed",
            extra={"prediction_id": pid, "reason": exc.reason, "latency_ms": elapsed_ms(started)},
        )
    except Exception as exc:
        log.exception("prediction failed", extra={"prediction_id": pid})
        metrics.observe_item_failure(queue, "inference_failed")
        reply = PredictReply(error=ItemError(reason="inference_failed", message=str(exc)))
    else:
        reply = PredictReply(prediction=found, worker_latency_ms=elapsed_ms(started))
        key = prediction_key(prediction_id=pid)
        record = PredictionRecord(key, found.label, found.probability, found.model, owner=owner)
    store(predict_mailbox.reply(pid, reply, record, quality))
    if reply.prediction is not None:  # after the answer left: its caller waits for none of it
        _count_and_log(queue, pid, reply.prediction, reply.worker_latency_ms)
    return reply


def _count_and_log(queue: str, pid: str, found: Classification, latency_ms: float | None) -> None:
    observe_prediction(queue, found)
    log.info(
        "prediction",
        extra={
            "task": "predict",
            "prediction_id": pid,
            "model_name": found.model.name,
            "model_version": found.model.version,
            "label": found.label,
            "probability": round(found.probability, 6),
            "latency_ms": latency_ms,
        },
    )


def _time_left(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.time()
    if left <= 0:
        raise PredictTimeoutError("the prediction's time limit passed while its photo decoded")
    return left
