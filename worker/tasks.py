"""Thin tasks: they take ids and keys (JSON), set the request id for their log lines and call
plain functions in `worker.realtime`, `worker.bulk` and `worker.callbacks`."""

import contextlib
import logging
import time

import redis
from celery import Task

from common.errors import (
    CallbackError,
    JobExpiredError,
    JobNotFoundError,
    ModelNotAvailableError,
)
from common.imaging import ImageLimits
from common.logging_setup import request_id_var
from common.messaging import CHUNK_TASK, JOB_ENDED_TASK, PREDICT_TASK
from common.quality import QualityConfig
from common.settings import get_settings
from common.store import jobs, limits, workers
from common.store.ops import Store
from common.wire import ItemResult
from worker import bulk, callbacks, metrics, realtime, runtime
from worker.celery_app import app, task_store

log = logging.getLogger(__name__)

# A chunk whose model cannot load waits this often before its items fail.
MODEL_RETRIES = 5


# No task events for /predict (Flower shows job chunks and the workers): at tens of requests a
# second, each one's received/started/succeeded events cost the worker's consumer thread as
# much as the forward pass (profiled with py-spy). Prometheus and the logs count them.
@app.task(name=PREDICT_TASK, ignore_result=True, send_events=False)
def predict(
    prediction_id: str,
    request_id: str | None = None,
    enqueued_at: float | None = None,
    owner: str = "",
) -> None:
    token = request_id_var.set(request_id)
    settings = get_settings()
    # The soft limit: nobody waits for the answer after the gateway's own timeout.
    now = time.time()
    deadline = min(
        (enqueued_at or now) + settings.predict_timeout_s, now + settings.task_soft_time_limit_s
    )
    try:
        with runtime.watching(f"predict {prediction_id}"):
            realtime.serve_prediction(
                task_store(),
                lambda: runtime.model_host().realtime_engine(),
                prediction_id,
                ImageLimits.from_settings(settings),
                queue=settings.realtime_queue,
                enqueued_at=enqueued_at,
                deadline=deadline,
                owner=owner,
                quality=QualityConfig.from_settings(settings),
            )
    finally:
        request_id_var.reset(token)


@app.task(
    name=CHUNK_TASK,
    bind=True,
    ignore_result=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    max_retries=10,
)
def run_chunk(
    self: Task,
    job_id: str,
    chunk: int,
    indices: list[int],
    request_id: str | None = None,
    enqueued_at: float | None = None,
) -> None:
    token = request_id_var.set(request_id)
    settings = get_settings()
    holder = ""
    try:
        try:
            host = runtime.model_host()
            engine, holder = host.engine(), host.worker_id
        except ModelNotAvailableError as exc:
            if self.request.retries < MODEL_RETRIES:
                raise self.retry(countdown=5, exc=exc) from exc
            metrics.observe_task_failure(CHUNK_TASK, exc.reason)
            _fail_items(job_id, indices, exc)
            return
        outcome = bulk.run_chunk(
            task_store(),
            engine,
            job_id,
            chunk,
            indices,
            batch_size=settings.batch_size,
            max_deliveries=settings.max_deliveries,
            limits=ImageLimits.from_settings(settings),
            queue=settings.bulk_queue,
            # A retry waited on purpose (its countdown): only a first delivery's wait counts.
            enqueued_at=enqueued_at if self.request.retries == 0 else None,
            quality=QualityConfig.from_settings(settings),
            holder=holder,
        )
        if outcome.finished:
            job_ended.delay(job_id)
        elif outcome.timed_out:  # the rest of the chunk, at once, one item at a time
            raise self.retry(countdown=0)
    finally:
        # However the run ended; a chunk that raised is the sweeper's to re-drive. The host's
        # mark goes too if no process took it over (a chunk whose model never loaded).
        reserved = workers.host_holder(runtime.identity().hostname)
        with contextlib.suppress(redis.RedisError):
            task_store()(jobs.release_chunk(job_id, chunk, *filter(None, [holder, reserved])))
        request_id_var.reset(token)


def _fail_items(job_id: str, indices: list[int], exc: ModelNotAvailableError) -> None:
    store = task_store()
    pending = store(jobs.unfinished(job_id, indices))
    failures = [ItemResult.failure(i, exc.reason, exc.message) for i in pending]
    queue = get_settings().bulk_queue
    for _ in failures:
        metrics.observe_item_failure(queue, exc.reason)
    if store(jobs.complete(job_id, failures)).finished:
        job_ended.delay(job_id)


@app.task(name=JOB_ENDED_TASK, bind=True, ignore_result=True, max_retries=None)
def job_ended(self: Task, job_id: str) -> None:
    """The one owner of what follows a job's end, however it ended (its last item, a cancel,
    every file refused): count it and log it once, then deliver its callback."""
    store = task_store()
    try:
        record = store(jobs.read(job_id))
    except (JobNotFoundError, JobExpiredError):
        store(jobs.settle(job_id))
        return
    store(jobs.expect_news(job_id, 0))  # the sweeper sees this report running
    # Its log lines carry the request id of the upload that created the job.
    token = request_id_var.set(record.request_id)
    try:
        _report_end(self, store, record)
    finally:
        request_id_var.reset(token)


def _report_end(task: Task, store: Store, record: jobs.JobRecord) -> None:
    settings = get_settings()
    job_id = record.job_id
    if store(jobs.claim_end(job_id)):
        metrics.observe_job_finished(record.status.value)
        log.info("job finished", extra=record.summary().model_dump(mode="json"))
    # The job no longer counts against its API key's limits (idempotent).
    store(limits.release_job(record.owner, job_id))
    if not record.callback_url or record.callback_status in ("delivered", "failed"):
        store(jobs.settle(job_id))
        return
    body = callbacks.callback_body(record.summary())
    attempt = task.request.retries + 1
    try:
        secret = settings.callback_secret.get_secret_value()
        callbacks.post_callback(record.callback_url, body, secret, job_id, settings)
    except CallbackError as exc:
        if not exc.retryable or attempt >= settings.callback_max_attempts:
            store(jobs.set_callback_status(job_id, "failed"))
            store(jobs.settle(job_id))
            metrics.observe_task_failure(JOB_ENDED_TASK, exc.reason)
            log.error(
                "callback given up",
                extra={"job_id": job_id, "attempts": attempt, "error": exc.message},
            )
            return
        store(jobs.set_callback_status(job_id, "retrying"))
        countdown = callbacks.backoff_s(task.request.retries)
        # The retry waits on purpose: the sweeper reports the end again only if it is late.
        store(jobs.expect_news(job_id, countdown))
        log.warning("callback failed; will retry", extra={"job_id": job_id, "error": str(exc)})
        raise task.retry(countdown=countdown, exc=exc) from exc
    store(jobs.set_callback_status(job_id, "delivered"))
    store(jobs.settle(job_id))
    log.info("callback delivered", extra={"job_id": job_id, "attempts": attempt})
