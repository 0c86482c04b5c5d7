"""Per-process serving state: which queues this worker consumes, and the model it holds.

Model load timing. Each model-owning process (a prefork child, or the one solo process per
GPU) loads the model in `worker_process_init` and warms it up before returning. A prefork
child only receives tasks once it has reported "up", which happens after that handler, so no
task ever waits on a cold model; Celery's 4 s start-up limit is raised to
`settings.model_load_timeout_s` (`worker_proc_alive_timeout`) to leave room for a registry
download. The parent never touches torch, so no CUDA state is forked.

A heartbeat thread writes this process's state (queues, loading/ready/failed, model name and
version, device) to Redis every `heartbeat_interval_s`; the gateway's readiness reads it. The
same thread watches the reload generation (`python -m worker.reload`) and reloads in a
background thread: the new model is swapped in only once loaded and warm, so a failed load
keeps the old one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import redis

from common.errors import ModelNotAvailableError
from common.settings import Settings
from common.store import model_generation, workers
from common.store.ops import Store
from common.wire import Heartbeat, WorkerState
from worker import metrics
from worker.batcher import BatchedEngine
from worker.forward import CountedEngine, Engine
from worker.watchdog import Watchdog

if TYPE_CHECKING:
    from worker.engine import InferenceEngine

log = logging.getLogger(__name__)

T = TypeVar("T")

# A failed model load is tried again after `model_load_retry_s`, doubling up to this.
LOAD_BACKOFF_MAX_S = 60.0


@dataclass
class Identity:
    """What the worker's main process knows before it forks: set by `celeryd_after_setup`."""

    hostname: str = "celery@unknown"
    queues: list[str] = field(default_factory=list)
    concurrency: int = 1
    pool: str = "prefork"  # "prefork", "solo" or "threads"

    @property
    def model_processes(self) -> int:
        """Processes that each hold a model: every prefork child, else the one process."""
        return self.concurrency if self.pool == "prefork" else 1


_identity = Identity()
_host: ModelHost | None = None


def set_identity(identity: Identity) -> None:
    global _identity
    _identity = identity


def identity() -> Identity:
    return _identity


def available_cores() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (containers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def cpu_threads(concurrency: int) -> int:
    """Cores per model-owning process, so N processes together use every core once."""
    return max(1, available_cores() // max(1, concurrency))


def select_device(settings: Settings, identity: Identity) -> str:
    import torch

    device = settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if identity.model_processes > 1:
            log.warning(
                "several processes share one GPU; run one solo worker per GPU (-P solo)",
                extra={"concurrency": identity.concurrency},
            )
        # The CPU work of a GPU worker is each task thread preparing its own photo: torch's
        # intra-op pool (a thread per core) only made 16 task threads fight over the cores.
        # On the H200 machine the worker kept 11 of its 16 cores busy for 100 img/s
        # (bench/results/2026-12-04-gpu-h200.md).
        torch.set_num_threads(settings.worker_threads or 1)
    else:
        torch.set_num_threads(settings.worker_threads or cpu_threads(identity.model_processes))
    return device


class ModelHost:
    """The model of one process, its heartbeat and its reloads."""

    def __init__(self, settings: Settings, identity: Identity, store: Store) -> None:
        self.settings = settings
        self.identity = identity
        self.store = store
        self.worker_id = f"{identity.hostname}:{os.getpid()}"
        self.device = "cpu"
        self.state: WorkerState = "loading"
        self.error: str | None = None
        self.generation = 0
        self._engine: InferenceEngine | None = None
        self._realtime: Engine | None = None
        self._stopped = threading.Event()
        self._reloading = threading.Lock()
        self._last_attempt = 0.0
        self._failed_loads = 0
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name="heartbeat", daemon=True
        )

    # lifecycle
    def start(self) -> None:
        """Load and warm the model (blocking), with the heartbeat already running."""
        self.device = select_device(self.settings, self.identity)
        self.generation = self._safe(lambda: self.store(model_generation.current()), 0)
        self._heartbeat_thread.start()
        with self._reloading:
            if self.identity.pool != "threads":
                self._load()
                return
            # A threaded worker's model is driven by its batcher thread. Loaded by the main
            # thread, the same model ran its forward passes there at half speed (measured with
            # torch 2.14 on 2 cores, bench/README.md); loaded by any other thread, at full speed.
            loader = threading.Thread(target=self._load, name="model-load")
            loader.start()
            loader.join()

    def stop(self) -> None:
        self._stopped.set()
        if isinstance(self._realtime, BatchedEngine):
            self._realtime.close()
        if self._heartbeat_thread.is_alive():  # so no beat lands after the forget below
            self._heartbeat_thread.join(timeout=5)
        self._safe(lambda: self.store(workers.forget(self.worker_id)), None)

    # the model
    def engine(self) -> InferenceEngine:
        """The model for bulk work: batches of `batch_size` in the calling thread."""
        self._retry_failed_load()
        if self._engine is None:
            raise ModelNotAvailableError(f"no model loaded in this worker: {self.error}")
        return self._engine

    def realtime_engine(self) -> Engine:
        """The model for /predict: concurrent callers share micro-batched forward passes."""
        self._retry_failed_load()
        if self._realtime is None:
            raise ModelNotAvailableError(f"no model loaded in this worker: {self.error}")
        return self._realtime

    def _realtime_face(self, engine: InferenceEngine) -> Engine:
        """A threaded worker micro-batches /predict; a process that answers one request at a
        time (prefork child, solo) runs each alone. Either way the engine is warm after."""
        queue = self.settings.realtime_queue
        if self.identity.pool != "threads":
            engine.warm_up()
            return CountedEngine(engine, queue)
        largest = self.settings.max_batch_size
        return BatchedEngine(
            engine,
            largest,
            self.settings.max_wait_ms,
            queue,
            prepare_in_callers=self.device == "cuda",
            # On the batcher's thread: it must be the only one driving the model.
            warm_up=lambda: engine.warm_up(largest),
        )

    def _retry_failed_load(self) -> None:
        """A process without a model tries again when its backoff allows (the heartbeat
        thread asks every beat; a task that arrives anyway asks too)."""
        if self._engine is None and self._load_due() and self._reloading.acquire(False):
            try:
                self._load()
            finally:
                self._reloading.release()

    def _load_due(self) -> bool:
        # 5, 10, 20, 40, then every 60 s by default: a missing champion is found within a
        # minute of its registration without hammering the registry meanwhile.
        first_s = self.settings.model_load_retry_s
        backoff_s = min(LOAD_BACKOFF_MAX_S, first_s * 2 ** max(0, self._failed_loads - 1))
        return time.monotonic() - self._last_attempt >= backoff_s

    def _load(self, generation: int | None = None) -> bool:
        from common.ml.loading import load_model
        from worker.engine import InferenceEngine

        self._last_attempt = time.monotonic()
        started = time.perf_counter()
        try:
            loaded = load_model(
                self.settings.model_uri, self.settings.mlflow_tracking_uri, self.device
            )
            engine = InferenceEngine(
                loaded,
                self.device,
                self.settings.batch_size,
                self.settings.pet_threshold,
                self.settings.inference_runtime,
                self.settings.precision,
            )
            realtime = self._realtime_face(engine)
        except Exception as exc:
            metrics.observe_model_load(time.perf_counter() - started, ok=False)
            self._failed_loads += 1
            self.error = str(exc)
            self.state = "ready" if self._engine is not None else "failed"
            if generation is not None:
                self.generation = generation
            log.exception(
                "model load failed; keeping the current model"
                if self._engine
                else "model load failed",
                extra={"model_uri": self.settings.model_uri},
            )
            self._beat()
            return False
        previous = self._realtime
        self._engine, self._realtime = engine, realtime
        if isinstance(previous, BatchedEngine):  # it answers what it holds, then stops
            previous.close()
        self.state = "ready"
        self.error = None
        self._failed_loads = 0
        if generation is not None:
            self.generation = generation
        metrics.observe_model_load(time.perf_counter() - started, ok=True)
        metrics.set_model(engine.model.name, engine.model.version, self.device)
        log.info(
            "model ready",
            extra={
                "model_name": engine.model.name,
                "model_version": engine.model.version,
                "device": self.device,
                "load_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        self._beat()
        return True

    # heartbeat and reloads
    def heartbeat(self) -> Heartbeat:
        engine = self._engine
        return Heartbeat(
            worker_id=self.worker_id,
            hostname=self.identity.hostname,
            pid=os.getpid(),
            queues=list(self.identity.queues),
            state=self.state,
            device=self.device,
            model=engine.model if engine else None,
            generation=self.generation,
            error=self.error,
        )

    def _beat(self) -> None:
        self._safe(
            lambda: self.store(
                workers.beat(self.heartbeat(), 3 * self.settings.heartbeat_interval_s)
            ),
            None,
        )

    def _heartbeat_loop(self) -> None:
        while not self._stopped.is_set():
            self._beat()
            requested = self._safe(lambda: self.store(model_generation.current()), self.generation)
            if self._engine is None and self._load_due() and self._reloading.acquire(False):
                # Off this thread: the heartbeat goes on while a load takes its time.
                threading.Thread(
                    target=self._reload, args=(None,), name="load", daemon=True
                ).start()
            elif requested != self.generation and self._reloading.acquire(False):
                threading.Thread(
                    target=self._reload, args=(requested,), name="reload", daemon=True
                ).start()
            self._stopped.wait(self.settings.heartbeat_interval_s)

    def _reload(self, generation: int | None) -> None:
        # The heartbeat reports the new generation only once the load has ended either way;
        # None: a retry of a failed first load.
        try:
            if generation is not None:
                log.info("reload requested", extra={"generation": generation})
            self._load(generation)
        finally:
            self._reloading.release()

    def _safe(self, call: Callable[[], T], default: T) -> T:
        try:
            return call()
        except redis.RedisError as exc:
            log.warning("Redis unavailable for the heartbeat", extra={"error": str(exc)})
            return default


def start_model_host(settings: Settings, hostname: str | None = None) -> ModelHost:
    global _host
    identity = _identity
    if hostname:
        identity = Identity(hostname, identity.queues, identity.concurrency, identity.pool)
    _host = ModelHost(settings, identity, Store.from_url(settings.redis_url))
    if identity.pool == "threads":
        _start_watchdog(settings.task_time_limit_s)
    _host.start()
    return _host


_watchdog: Watchdog | None = None


def _start_watchdog(limit_s: float) -> None:
    global _watchdog
    if _watchdog is None:
        _watchdog = Watchdog(limit_s)


def watching(what: str) -> AbstractContextManager[None]:
    """The hard time limit around one task of a threaded worker (worker.watchdog); in
    prefork children Celery enforces its own."""
    return _watchdog.watching(what) if _watchdog is not None else nullcontext()


def stop_model_host() -> None:
    if _host is not None:
        _host.stop()


def model_host() -> ModelHost:
    if _host is None:
        raise ModelNotAvailableError("this process has no model host (worker not initialised)")
    return _host
