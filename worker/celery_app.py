"""The worker's Celery app: `celery -A worker.celery_app:app worker -Q realtime,bulk`.

Three shapes, one code path:
- Realtime (`-Q realtime -P threads -c 16`): one process, one model, 16 task threads whose
  /predict images share micro-batched forward passes (worker.batcher); torch gets every core.
- Bulk (`-Q bulk -c 1`, `CATDOG_WORKER_NICE=10`): prefork, one model per child, torch threads
  = cores / children, children recycled past `worker_max_memory_per_child_kb`; its nice value
  hands the CPU to the realtime worker whenever /predict has work.
- GPU: one `-P solo` (or `-P threads`) worker per GPU (`CUDA_VISIBLE_DEVICES=N`), so CUDA is
  only ever initialised in the process that uses it.
A worker started without -Q consumes both queues.

Importing this module opens no connection and does not import torch (the health check and
the reload command import it); the model loads in `worker_process_init` (prefork children,
solo), or in the main process before it consumes anything (threads). A worker consumes its
queues only once one of its processes reports a loaded model (worker.consuming); on bulk
workers the main process also runs the sweeper (worker.sweeper).

Metrics: the main process serves every pool process's metrics on
`settings.worker_metrics_port` (worker/metrics.py, prometheus_client multiprocess mode);
`PROMETHEUS_MULTIPROC_DIR` must name a directory of this worker alone.
"""

import contextlib
import logging
import os
import time
from functools import cache
from pathlib import Path
from typing import Any

import redis
from celery import signals

from common.logging_setup import configure_logging
from common.messaging import CHUNK_TASK, make_celery, publish_chunk, publish_job_ended
from common.settings import Settings, get_settings
from common.store import jobs, workers
from common.store.ops import Store
from worker import consuming, metrics, runtime, sweeper

app = make_celery(get_settings(), "catdog-worker", include=["worker.tasks"])

log = logging.getLogger(__name__)


@signals.setup_logging.connect
def _configure_logging(**_: Any) -> None:
    # Connecting this signal stops Celery from installing its own handlers.
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)


@signals.worker_init.connect
def _refuse_to_start_without_secrets(**_: Any) -> None:
    # Workers sign callbacks: in production they never fall back to the development secret.
    # SystemExit, because Celery logs and ignores an ordinary exception from a signal.
    try:
        get_settings().require_secrets("callback_secret")
    except ValueError as exc:
        raise SystemExit(f"worker not started: {exc}") from exc


@signals.worker_init.connect
def _start_metrics_exporter(**_: Any) -> None:
    # Main process, before the pool forks: files of an earlier run would be summed in.
    port = get_settings().worker_metrics_port
    metrics.reset_multiproc_dir()
    try:
        metrics.start_metrics_server(port)
    except OSError as exc:  # the port is taken: the worker still serves, without metrics
        log.error("worker metrics exporter not started", extra={"port": port, "error": str(exc)})


@signals.task_failure.connect
def _count_task_failure(
    sender: Any = None, exception: BaseException | None = None, **_: Any
) -> None:
    # A task that raised for good (retries exhausted); the reason is the exception's class.
    name = getattr(sender, "name", None) or "unknown"
    metrics.observe_task_failure(str(name), type(exception).__name__ if exception else "unknown")


def lower_priority(nice: int) -> None:
    """This process and its future pool children yield the CPU to normal-priority ones.

    Under autogroup scheduling (Linux's default on many VMs, `kernel.sched_autogroup_enabled`)
    a nice value only orders processes of one session against each other; sessions share the
    CPU by their autogroup's nice. So the session's autogroup is lowered too: a worker started
    in a session of its own (`scripts/serve.sh`, the tests, a container) then really gives
    way. Measured: without it, /predict beside a running job had a p50 of 912 ms."""
    os.nice(nice)
    # Without autogroup scheduling (or off Linux) there is no such file: the nice value suffices.
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(f"{nice}\n")


def _pool_kind(pool: Any) -> str:
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", str(pool))
    if "solo" in name:
        return "solo"
    return "threads" if "thread" in name else "prefork"


@signals.celeryd_after_setup.connect
def _remember_identity(sender: str, instance: Any, **_: Any) -> None:
    # Runs in the main process after -Q is applied and before the pool forks.
    settings = get_settings()
    if settings.worker_nice:
        lower_priority(settings.worker_nice)
    identity = runtime.Identity(
        hostname=sender,
        queues=sorted(instance.app.amqp.queues.consume_from),
        concurrency=int(instance.concurrency or 1),
        pool=_pool_kind(instance.pool_cls),
    )
    runtime.set_identity(identity)
    if identity.queues == [settings.realtime_queue]:
        _without_ack_emulation(instance.app)
    if identity.queues == [settings.bulk_queue]:
        _prefetch(instance, settings.bulk_prefetch_multiplier)
    consuming.hold_back(instance.app, identity.queues)  # until a process has a model
    if identity.pool == "threads":
        # The task threads share this process's model: load it before consuming anything.
        runtime.start_model_host(settings, hostname=sender)


def _without_ack_emulation(celery: Any) -> None:
    """A worker of the realtime queue alone takes its messages without Kombu's ack emulation.

    The emulation keeps each delivered message in Redis (a transaction before the task may
    start, another to acknowledge it) so that a dead worker's message comes back after the
    visibility timeout (an hour). A /predict's gateway stops waiting after
    `predict_timeout_s` (10 s) and deletes its upload, so a message that came back would
    find nothing to do: the emulation buys /predict nothing and cost it about 0.9 ms of
    each answer on this project's 2-core machine (bench/README.md). Read when the consumer
    connects, after this hook."""
    options = dict(celery.conf.broker_transport_options or {})
    celery.conf.broker_transport_options = {**options, "ack_emulation": False}


@cache
def task_store() -> Store:
    """The Store this process's tasks and signal handlers share, made on first use (a pool
    child that inherits it gets fresh connections: redis-py's pool checks the pid)."""
    return Store.from_url(get_settings().redis_url)


@signals.task_received.connect
def _reserve_chunk(request: Any = None, **_: Any) -> None:
    """Main process, as a chunk's message arrives and before a pool process has it: the
    chunk is held by this host until a process starts it, so a host that dies with chunks
    waiting in its prefetch (or in a retry's countdown) has them re-driven by the sweeper at
    once, not after the stall timeout. Kombu would give them back only after the
    visibility timeout (an hour)."""
    if request is None or request.name != CHUNK_TASK:
        return
    job_id, chunk = request.args[0], int(request.args[1])
    holder = workers.host_holder(runtime.identity().hostname)
    try:
        task_store()(jobs.reserve_chunk(job_id, chunk, holder))
    except redis.RedisError as exc:  # the stall rule still recovers the chunk
        log.warning("chunk not marked reserved", extra={"job_id": job_id, "error": str(exc)})


def _prefetch(worker: Any, multiplier: int) -> None:
    """A worker of the bulk queue alone holds `multiplier` chunk messages per pool process,
    so a process's next chunk is in hand when its last one ends instead of fetched from
    Redis once the last is acknowledged (the median gap between a process's chunks fell
    from 8.1 to 6.1 ms, bench/README.md). Not for /predict: a request must never wait in
    one worker's prefetch while another worker is free. The consumer exists by now, built
    with the app's multiplier (its count is processes x that); it reads these when it
    starts, after this hook."""
    consumer = worker.consumer
    processes = consumer.initial_prefetch_count // consumer.prefetch_multiplier
    consumer.prefetch_multiplier = multiplier
    consumer.initial_prefetch_count = processes * multiplier


class _CeleryPublisher:
    """The sweeper's way to queue work again: the same messages the gateway sends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def chunk(self, job_id: str, chunk: int, indices: list[int], request_id: str | None) -> None:
        publish_chunk(app, self.settings, job_id, chunk, indices, request_id, time.time())

    def job_ended(self, job_id: str) -> None:
        publish_job_ended(app, self.settings, job_id)


_sweeper: sweeper.Sweeper | None = None
_gate: consuming.ConsumeGate | None = None


def _consume(queue: str) -> None:
    # By remote control, so the consumer adds the queue in its own thread.
    hostname = runtime.identity().hostname
    if not app.control.add_consumer(queue, destination=[hostname], reply=True, timeout=5):
        raise RuntimeError(f"{hostname} did not answer the request to consume {queue}")


@signals.worker_ready.connect
def _start_main_process_threads(sender: Any = None, **_: Any) -> None:
    # Main process, once its consumer (and remote control) runs: the gate that opens the
    # queues when a model is ready, and on bulk workers the sweeper (recovery is of jobs).
    global _sweeper, _gate
    settings = get_settings()
    identity = runtime.identity()
    _gate = consuming.ConsumeGate(
        Store.from_url(settings.redis_url),
        identity.hostname,
        identity.queues,
        _consume,
    )
    _gate.start()
    if settings.bulk_queue not in identity.queues:
        return
    _sweeper = sweeper.Sweeper(
        Store.from_url(settings.redis_url),
        _CeleryPublisher(settings),
        sweeper.SweepConfig.from_settings(settings),
        holder=f"{identity.hostname}:{os.getpid()}",
    )
    _sweeper.start()


@signals.worker_process_init.connect
def _load_model(sender: str | None = None, **_: Any) -> None:
    runtime.start_model_host(get_settings(), hostname=sender)


@signals.worker_process_shutdown.connect
def _forget_model(pid: int | None = None, **_: Any) -> None:
    runtime.stop_model_host()
    if pid is not None:  # its live gauges (the model it served) leave the exporter
        metrics.on_child_exit(pid)


@signals.worker_shutdown.connect
def _forget_solo_model(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()
    if _gate is not None:
        _gate.stop()
    runtime.stop_model_host()
