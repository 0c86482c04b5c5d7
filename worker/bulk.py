"""The body of the bulk-chunk task, as plain functions of a store and an engine (testable
without Celery): run part of a job as batched forward passes. Redelivery and cancellation
rules live here:

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
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image

from common.errors import CatDogError
from common.imaging import ImageLimits, decode_image
from common.quality import QualityConfig, job_item_records, record_predictions
from common.store import jobs
from common.store.ops import Store
from common.wire import TERMINAL, Classification, ItemResult, JobStatus
from worker.forward import Engine, elapsed_ms, observe_queue_wait, observe_results, timed_predict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkOutcome:
    written: int = 0
    skipped: bool = False  # the job was gone, cancelled or finished before this chunk ran
    stopped: bool = False  # the job was cancelled while this chunk ran
    finished: bool = False  # this chunk completed the job
    timed_out: bool = False  # the soft time limit stopped it; its other items still need a run


def run_chunk(
    store: Store,
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
    holder: str = "",
) -> ChunkOutcome:
    """Run the chunk's unfinished items in batches, as `holder` (this worker process's
    heartbeat id: if it dies, the sweeper re-drives the chunk; the caller releases it with
    `jobs.release_chunk` however the run ends). With `quality`, the items written are
    recorded for live quality (feedback by job id and index, the prediction-mix window)."""
    started = time.perf_counter()
    begun = store(jobs.start_chunk(job_id, chunk, holder))
    status, deliveries = begun.status, begun.deliveries
    context = {"job_id": job_id, "chunk": chunk, "deliveries": deliveries}
    if status is None or status in TERMINAL:
        log.info("chunk skipped", extra={**context, "job_status": status and status.value})
        return ChunkOutcome(skipped=True)
    pending = store(jobs.unfinished(job_id, indices))
    observe_queue_wait(queue, enqueued_at, len(pending))
    step = 1 if deliveries > 1 else batch_size
    written, finished, stopped, timed_out = 0, False, False, False
    labels: dict[str, int] = {}
    for start in range(0, len(pending), step):
        batch = pending[start : start + step]
        if store(jobs.status(job_id)) is not JobStatus.RUNNING:
            stopped = True
            break
        try:
            results = run_batch(store, engine, job_id, batch, max_deliveries, limits, queue=queue)
        except SoftTimeLimitExceeded:
            # The items in hand fail; the task hands the rest of the chunk on.
            results, timed_out = [_timed_out(index) for index in batch], True
        observe_results(queue, results)
        completion = store(jobs.complete(job_id, results))
        store(jobs.drop_images(job_id, batch))
        if not completion.accepted:
            stopped = True
            break
        if quality is not None:
            _record_quality(store, job_id, begun.owner, results, quality)
        for r in results:
            key = r.prediction.label if r.prediction else "failed"
            labels[key] = labels.get(key, 0) + 1
        written += completion.written
        finished = finished or completion.finished
        if timed_out:
            break
    log.info(
        "chunk done",
        extra={
            **context,
            "task": "run_chunk",
            "items": len(indices),
            "written": written,
            "stopped": stopped,
            "timed_out": timed_out,
            "labels": labels,
            "model_name": engine.model.name,
            "model_version": engine.model.version,
            "latency_ms": elapsed_ms(started),
        },
    )
    return ChunkOutcome(written=written, stopped=stopped, finished=finished, timed_out=timed_out)


def _timed_out(index: int) -> ItemResult:
    return ItemResult.failure(
        index, "timeout", "the item was still being classified at the task's time limit"
    )


def _record_quality(
    store: Store, job_id: str, owner: str, results: Sequence[ItemResult], quality: QualityConfig
) -> None:
    # Best effort: the results are stored; a lost quality record only costs feedback on it
    # (the gateway also finds job items in the job store).
    try:
        records = job_item_records(job_id, results, owner)
        store(record_predictions(records, ttl_s=quality.record_ttl_s, window=quality.window))
    except redis.RedisError as exc:
        log.warning("could not record job items for live quality", extra={"error": str(exc)})


def run_batch(
    store: Store,
    engine: Engine,
    job_id: str,
    batch: Sequence[int],
    max_deliveries: int,
    limits: ImageLimits,
    *,
    queue: str = "bulk",
) -> list[ItemResult]:
    """Results for `batch`: decode each image, then one forward pass for the good ones."""
    attempts = store(jobs.count_attempts(job_id, batch))
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
    for index, data in zip(runnable, store(jobs.images(job_id, runnable)), strict=True):
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
    for index, outcome in zip(decoded, _predict(engine, images, queue), strict=True):
        results[index] = (
            ItemResult(index=index, prediction=outcome)
            if isinstance(outcome, Classification)
            else ItemResult.failure(index, "inference_failed", outcome)
        )
    return [results[index] for index in batch]


def _predict(
    engine: Engine, images: Sequence[Image.Image], queue: str
) -> list[Classification | str]:
    """One forward pass; if it fails, each image alone, so one bad item fails only itself
    (its entry is then the error message)."""
    if not images:
        return []
    try:
        return list(timed_predict(engine, images, queue))
    except SoftTimeLimitExceeded:  # an Exception too, but the task's, not the item's
        raise
    except Exception as exc:
        if len(images) == 1:
            log.exception("inference failed for an item")
            return [str(exc)]
        log.warning("batch inference failed; retrying item by item", extra={"error": str(exc)})
        return [outcome for image in images for outcome in _predict(engine, [image], queue)]
