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

Every forward pass, prediction and failed item is counted in `worker.metrics`; the job items
a chunk wrote are recorded for live quality (`common.quality`), so feedback can name them.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import redis
from PIL import Image

from common.errors import CatDogError
from common.imaging import ImageLimits, decode_image
from common.jobstore import ItemResult, JobStatus, JobStore
from common.quality import QualityConfig, job_item_records, record_predictions_sync
from worker import metrics

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


def _observe_queue_wait(queue: str, enqueued_at: float | None, items: int) -> None:
    # Wall clocks of the gateway and the worker: both read time.time() (NTP-synchronised).
    if enqueued_at is not None and items > 0:
        metrics.observe_queue_wait(queue, time.time() - enqueued_at, items)


def _timed_predict(
    engine: Engine, images: Sequence[Image.Image], queue: str
) -> list[PredictionLike]:
    """One forward pass, its size and time counted (only when it succeeds)."""
    started = time.perf_counter()
    predictions = list(engine.predict(images))
    metrics.observe_batch(queue, len(images), time.perf_counter() - started)
    return predictions


def _observe_results(queue: str, results: Sequence[ItemResult]) -> None:
    for r in results:
        if r.ok and r.label is not None:
            metrics.observe_prediction(
                queue,
                r.label,
                float(r.probability or 0.0),
                r.model_name or "",
                r.model_version or "",
            )
        else:
            metrics.observe_item_failure(queue, r.error.reason if r.error else "unknown")


# --- /predict ----------------------------------------------------------------------------


def serve_prediction(
    store: JobStore,
    engine_of: Callable[[], Engine],
    pid: str,
    limits: ImageLimits,
    *,
    queue: str = "realtime",
    enqueued_at: float | None = None,
) -> dict[str, Any] | None:
    """Predict the image stored under `pid` and push the answer for the waiting gateway."""
    started = time.perf_counter()
    _observe_queue_wait(queue, enqueued_at, 1)
    data = store.predict_image(pid)
    if data is None:  # the gateway gave up (timeout) or the image expired
        log.warning("prediction abandoned before it ran", extra={"prediction_id": pid})
        return None
    try:
        engine = engine_of()
        image = decode_image(data, limits).image
        prediction = _timed_predict(engine, [image], queue)[0]
    except CatDogError as exc:
        reply: dict[str, Any] = {"ok": False, "error": {"reason": exc.reason, "message": str(exc)}}
        metrics.observe_item_failure(queue, exc.reason)
        log.warning(
            "prediction failed",
            extra={"prediction_id": pid, "reason": exc.reason, "latency_ms": _ms(started)},
        )
    except Exception as exc:
        log.exception("prediction failed", extra={"prediction_id": pid})
        metrics.observe_item_failure(queue, "inference_failed")
        reply = {"ok": False, "error": {"reason": "inference_failed", "message": str(exc)}}
    else:
        metrics.observe_prediction(
            queue, prediction.label, prediction.probability, engine.name, engine.version
        )
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
                "task": "predict",
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
    queue: str = "bulk",
    enqueued_at: float | None = None,
    quality: QualityConfig | None = None,
) -> ChunkOutcome:
    """Run the chunk's unfinished items in batches. With `quality`, the items written are
    recorded for live quality (feedback by job id and index, the prediction-mix window)."""
    started = time.perf_counter()
    status, deliveries = store.start_chunk(job_id, chunk)
    context = {"job_id": job_id, "chunk": chunk, "deliveries": deliveries}
    if status is None or status in (JobStatus.CANCELLED, JobStatus.SUCCEEDED, JobStatus.FAILED):
        log.info("chunk skipped", extra={**context, "job_status": status and status.value})
        return ChunkOutcome(skipped=True)
    pending = store.unfinished(job_id, indices)
    _observe_queue_wait(queue, enqueued_at, len(pending))
    step = 1 if deliveries > 1 else batch_size
    written, finished, stopped = 0, False, False
    labels: dict[str, int] = {}
    for start in range(0, len(pending), step):
        batch = pending[start : start + step]
        if store.status(job_id) is not JobStatus.RUNNING:
            stopped = True
            break
        results = run_batch(store, engine, job_id, batch, max_deliveries, limits, queue=queue)
        _observe_results(queue, results)
        completion = store.complete(job_id, results)
        store.drop_images(job_id, batch)
        if not completion.accepted:
            stopped = True
            break
        if quality is not None:
            _record_quality(store, job_id, results, quality)
        for r in results:
            key = r.label if r.ok and r.label else "failed"
            labels[key] = labels.get(key, 0) + 1
        written += completion.written
        finished = finished or completion.finished
    log.info(
        "chunk done",
        extra={
            **context,
            "task": "run_chunk",
            "items": len(indices),
            "written": written,
            "stopped": stopped,
            "labels": labels,
            "model_name": engine.name,
            "model_version": engine.version,
            "latency_ms": _ms(started),
        },
    )
    return ChunkOutcome(written=written, stopped=stopped, finished=finished)


def _record_quality(
    store: JobStore, job_id: str, results: Sequence[ItemResult], quality: QualityConfig
) -> None:
    # Best effort: the results are stored; a lost quality record only costs feedback on it
    # (the gateway also finds job items in the job store).
    try:
        record_predictions_sync(
            store.redis,
            job_item_records(job_id, results),
            ttl_s=quality.record_ttl_s,
            window=quality.window,
        )
    except redis.RedisError as exc:
        log.warning("could not record job items for live quality", extra={"error": str(exc)})


def run_batch(
    store: JobStore,
    engine: Engine,
    job_id: str,
    batch: Sequence[int],
    max_deliveries: int,
    limits: ImageLimits,
    *,
    queue: str = "bulk",
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
    for index, result in zip(decoded, _predict(engine, images, queue), strict=True):
        results[index] = replace(result, index=index)
    return [results[index] for index in batch]


def _predict(engine: Engine, images: Sequence[Image.Image], queue: str) -> list[ItemResult]:
    """One forward pass; if it fails, each image alone, so one bad item fails only itself."""
    if not images:
        return []
    try:
        predictions = _timed_predict(engine, images, queue)
    except Exception as exc:
        if len(images) == 1:
            log.exception("inference failed for an item")
            return [ItemResult.failure(-1, "inference_failed", str(exc))]
        log.warning("batch inference failed; retrying item by item", extra={"error": str(exc)})
        return [result for image in images for result in _predict(engine, [image], queue)]
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
