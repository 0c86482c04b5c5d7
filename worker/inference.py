"""What the tasks do, as plain functions of a store and an engine (torch-free, testable).

`serve_prediction` answers one /predict; `run_chunk` runs part of a bulk job as batched
forward passes. Redelivery and cancellation rules live here:

- An item with a result is never run again (the store writes each index once).
- Each item counts its attempts before it runs; past `max_deliveries` it ends `failed`
  without running, so an image that kills its worker process cannot loop forever.
- A chunk delivered a second time runs its items one at a time, so a poison item is
  isolated and only it pays for the crashes.
- Before each batch the job's status is read, and the store refuses every write once the
  job is cancelled: no item finishes after a cancel is acknowledged.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from PIL import Image

from common.errors import CatDogError
from common.imaging import ImageLimits, decode_image
from common.jobstore import ItemResult, JobStatus, JobStore

log = logging.getLogger(__name__)


class PredictionLike(Protocol):
    @property
    def label(self) -> str: ...

    @property
    def probability(self) -> float: ...

    @property
    def probabilities(self) -> dict[str, float]: ...


class Engine(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def predict(self, images: Sequence[Image.Image]) -> Sequence[PredictionLike]: ...


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


# --- /predict ----------------------------------------------------------------------------


def serve_prediction(
    store: JobStore, engine_of: Callable[[], Engine], pid: str, limits: ImageLimits
) -> dict[str, Any] | None:
    """Predict the image stored under `pid` and push the answer for the waiting gateway."""
    started = time.perf_counter()
    data = store.predict_image(pid)
    if data is None:  # the gateway gave up (timeout) or the image expired
        log.warning("prediction abandoned before it ran", extra={"prediction_id": pid})
        return None
    try:
        engine = engine_of()
        image = decode_image(data, limits).image
        prediction = engine.predict([image])[0]
    except CatDogError as exc:
        reply: dict[str, Any] = {"ok": False, "error": {"reason": exc.reason, "message": str(exc)}}
        log.warning("prediction failed", extra={"reason": exc.reason, "latency_ms": _ms(started)})
    except Exception as exc:
        log.exception("prediction failed")
        reply = {"ok": False, "error": {"reason": "inference_failed", "message": str(exc)}}
    else:
        reply = {
            "ok": True,
            "label": prediction.label,
            "probability": prediction.probability,
            "probabilities": prediction.probabilities,
            "model": {"name": engine.name, "version": engine.version},
            "worker_latency_ms": _ms(started),
        }
        log.info(
            "prediction",
            extra={
                "prediction_id": pid,
                "model_name": engine.name,
                "model_version": engine.version,
                "label": prediction.label,
                "probability": round(prediction.probability, 6),
                "latency_ms": reply["worker_latency_ms"],
            },
        )
    store.reply_predict(pid, reply)
    return reply


# --- bulk chunks -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkOutcome:
    written: int = 0
    skipped: bool = False  # the job was gone, cancelled or finished before this chunk ran
    stopped: bool = False  # the job was cancelled while this chunk ran
    finished: bool = False  # this chunk completed the job


def run_chunk(
    store: JobStore,
    engine: Engine,
    job_id: str,
    chunk: int,
    indices: Sequence[int],
    *,
    batch_size: int,
    max_deliveries: int,
    limits: ImageLimits,
) -> ChunkOutcome:
    started = time.perf_counter()
    status, deliveries = store.start_chunk(job_id, chunk)
    context = {"job_id": job_id, "chunk": chunk, "deliveries": deliveries}
    if status is None or status in (JobStatus.CANCELLED, JobStatus.SUCCEEDED, JobStatus.FAILED):
        log.info("chunk skipped", extra={**context, "job_status": status and status.value})
        return ChunkOutcome(skipped=True)
    pending = store.unfinished(job_id, indices)
    step = 1 if deliveries > 1 else batch_size
    written, finished, stopped = 0, False, False
    for start in range(0, len(pending), step):
        batch = pending[start : start + step]
        if store.status(job_id) is not JobStatus.RUNNING:
            stopped = True
            break
        results = run_batch(store, engine, job_id, batch, max_deliveries, limits)
        completion = store.complete(job_id, results)
        store.drop_images(job_id, batch)
        if not completion.accepted:
            stopped = True
            break
        written += completion.written
        finished = finished or completion.finished
    log.info(
        "chunk done",
        extra={
            **context,
            "items": len(indices),
            "written": written,
            "stopped": stopped,
            "model_name": engine.name,
            "model_version": engine.version,
            "latency_ms": _ms(started),
        },
    )
    return ChunkOutcome(written=written, stopped=stopped, finished=finished)


def run_batch(
    store: JobStore,
    engine: Engine,
    job_id: str,
    batch: Sequence[int],
    max_deliveries: int,
    limits: ImageLimits,
) -> list[ItemResult]:
    """Results for `batch`: decode each image, then one forward pass for the good ones."""
    attempts = store.count_attempts(job_id, batch)
    results: dict[int, ItemResult] = {}
    runnable: list[int] = []
    for index, attempt in zip(batch, attempts, strict=True):
        if attempt > max_deliveries:
            results[index] = ItemResult.failure(
                index,
                "max_deliveries",
                f"the item was started {attempt - 1} times without finishing; giving up",
            )
        else:
            runnable.append(index)
    images: list[Image.Image] = []
    decoded: list[int] = []
    for index, data in zip(runnable, store.images(job_id, runnable), strict=True):
        if data is None:
            results[index] = ItemResult.failure(
                index, "image_missing", "the uploaded image is no longer stored"
            )
            continue
        try:
            images.append(decode_image(data, limits).image)
            decoded.append(index)
        except CatDogError as exc:
            results[index] = ItemResult.failure(index, exc.reason, exc.message)
    for index, result in zip(decoded, _predict(engine, images), strict=True):
        results[index] = replace(result, index=index)
    return [results[index] for index in batch]


def _predict(engine: Engine, images: Sequence[Image.Image]) -> list[ItemResult]:
    """One forward pass; if it fails, each image alone, so one bad item fails only itself."""
    if not images:
        return []
    try:
        predictions = engine.predict(images)
    except Exception as exc:
        if len(images) == 1:
            log.exception("inference failed for an item")
            return [ItemResult.failure(-1, "inference_failed", str(exc))]
        log.warning("batch inference failed; retrying item by item", extra={"error": str(exc)})
        return [result for image in images for result in _predict(engine, [image])]
    return [
        ItemResult(
            index=-1,
            label=p.label,
            probability=p.probability,
            probabilities=p.probabilities,
            model_name=engine.name,
            model_version=engine.version,
        )
        for p in predictions
    ]
