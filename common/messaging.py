"""How the gateway and the workers talk through Celery: task names, queue routing and the one
Celery configuration both sides build from `Settings`.

Torch-free, so the gateway can publish tasks by name without importing the worker's code.
Messages are JSON only: a task carries ids and keys, never image bytes or pickled objects.
"""

import base64
import uuid
from typing import Any

from celery import Celery
from kombu import Queue
from kombu.utils.json import dumps

from common.settings import Settings

PREDICT_TASK = "catdog.predict"
CHUNK_TASK = "catdog.run_chunk"
# Reports a job's end once (metrics, log line) and delivers its callback; published by
# whoever ended the job: a worker finishing its last item, or the gateway (cancel, all refused).
JOB_ENDED_TASK = "catdog.job_ended"


def chunk_task_id(job_id: str, chunk: int) -> str:
    """Deterministic, so a cancel can revoke every chunk of a job without a lookup, and a
    chunk re-driven by the sweeper keeps its id."""
    return f"{job_id}-chunk-{chunk}"


def task_routes(settings: Settings) -> dict[str, dict[str, str]]:
    """Routing declared once: /predict on its own queue, bulk work and job ends on the other."""
    return {
        PREDICT_TASK: {"queue": settings.realtime_queue},
        CHUNK_TASK: {"queue": settings.bulk_queue},
        JOB_ENDED_TASK: {"queue": settings.bulk_queue},
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    # Kombu sweeps messages of dead consumers back into their queue every
    # `interval * throttle` seconds (100 s by default): keep it well inside the visibility
    # timeout so a lost chunk comes back soon after the timeout rather than minutes later.
    restore_interval = max(1, min(10, settings.visibility_timeout_s // 4))
    return {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_routes": task_routes(settings),
        # A worker started without -Q consumes both queues, named by the settings; a worker
        # meant for one of them passes -Q.
        "task_queues": (Queue(settings.realtime_queue), Queue(settings.bulk_queue)),
        "task_default_queue": settings.bulk_queue,
        # Results travel through our own Redis keys (common.store); Celery's backend only
        # records revoked chunks (a cancel), so tasks ignore results and publishers pass
        # ignore_result=True, which keeps them from subscribing to result channels.
        "task_ignore_result": True,
        "result_backend": settings.redis_url,
        "result_expires": settings.job_ttl_s,
        # A task is acknowledged after it ran; if its process dies the message goes back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Enforced by prefork pools (the bulk workers); a threads pool has no way to stop a
        # thread, and its /predict tasks are bounded by the gateway's wait and `expires`.
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": restore_interval,
            "unacked_restore_throttle": 1,
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3.0,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_kb,
        "worker_proc_alive_timeout": settings.model_load_timeout_s,
        "worker_hijack_root_logger": False,
        # Events for Flower, from the workers (the /predict task sends none: worker/tasks.py).
        # Publishers send no "task-sent" event: it would cost every /predict one more Redis
        # round trip; Flower shows a task from the moment a worker receives it.
        "worker_send_task_events": True,
        "task_send_sent_event": False,
    }


def publish_chunk(
    celery: Celery,
    settings: Settings,
    job_id: str,
    chunk: int,
    indices: list[int],
    request_id: str | None,
    enqueued_at: float,
) -> None:
    """Queue one chunk of a job: the gateway at upload, the sweeper when it re-drives."""
    celery.send_task(
        CHUNK_TASK,
        args=[job_id, chunk, indices, request_id],
        kwargs={"enqueued_at": enqueued_at},
        queue=settings.bulk_queue,
        task_id=chunk_task_id(job_id, chunk),
        ignore_result=True,
    )


def predict_message(
    celery: Celery,
    settings: Settings,
    prediction_id: str,
    request_id: str | None,
    owner: str,
    enqueued_at: float,
) -> bytes:
    """The /predict task as the entry Kombu's Redis transport pushes onto the realtime list,
    for the gateway to push itself, in the transaction that stores the upload.

    `celery.send_task` would publish the same message (tests/unit/common/test_messaging.py
    holds the two equal), but through Kombu's blocking producer, so in a thread of its own
    and in a round trip of its own (0.71 ms a call with the hop, on this project's 2-core
    machine; bench/README.md). Celery builds the task's headers and body (protocol 2); what
    is built here is Kombu's envelope around them, as
    `kombu.transport.virtual.Channel.basic_publish` makes it for a direct queue reached
    through the default exchange (what `send_task` turns a named queue into)."""
    task = celery.amqp.as_task_v2(
        prediction_id,
        PREDICT_TASK,
        args=[prediction_id, request_id],
        kwargs={"enqueued_at": enqueued_at, "owner": owner},
        # A prediction nobody waits for any more is discarded unread.
        expires=settings.predict_timeout_s,
        ignore_result=True,
        reply_to=celery.thread_oid,
    )
    envelope = {
        "body": base64.b64encode(dumps(task.body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": task.headers,
        "properties": {
            **task.properties,
            "delivery_mode": 2,  # persistent, Celery's default
            "expiration": str(int(settings.predict_timeout_s * 1000)),
            "delivery_info": {"exchange": "", "routing_key": settings.realtime_queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return dumps(envelope).encode()


def publish_job_ended(celery: Celery, settings: Settings, job_id: str) -> None:
    celery.send_task(JOB_ENDED_TASK, args=[job_id], queue=settings.bulk_queue, ignore_result=True)


def make_celery(settings: Settings, name: str, include: list[str] | None = None) -> Celery:
    """A Celery app wired to `settings`; creating it opens no connection."""
    app = Celery(name, broker=settings.redis_url, include=include or [])
    app.conf.update(celery_config(settings))
    return app
