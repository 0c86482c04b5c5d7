"""The workers' Prometheus metrics, and the exporter that shows every pool process's numbers.

Multiprocess mode. Under Celery's prefork pool the model, and so every number worth
counting, lives in the pool's child processes, which come and go (memory recycling, crashes).
prometheus_client's multiprocess mode gives each process its own memory-mapped file under
`$PROMETHEUS_MULTIPROC_DIR`; one HTTP exporter in the worker's main process merges them at
each scrape, so Prometheus scrapes one port per worker container whatever its concurrency.
(A port per child would need Prometheus to learn ports that change with every recycled
child.) The same code serves a solo pool (GPU): the main process is the only one.

What the deployment must do:

- set `PROMETHEUS_MULTIPROC_DIR` in the worker's environment, to a directory only this
  worker uses (a tmpfs in a container). prometheus_client reads it at import, so it cannot
  come from our settings object; without it each process counts alone and the exporter sees
  only the main process (a warning says so);
- in the main process, before the pool forks: `reset_multiproc_dir()` (stale files from a
  previous run would otherwise be summed in) and `start_metrics_server(port)`;
- in each child as it exits: `on_child_exit(os.getpid())`. A child killed without running
  it is found at the next scrape (`reap_dead_processes`), so its live gauges go away too.

Counters and histograms of dead children are kept (their totals still count); only gauges
describing live processes (the model info) are removed.

Limits of multiprocess mode, and how they are met here: `Info` metrics do not work, so the
model's name and version are the labels of a gauge (`catdog_worker_model_info`, whose value
is the number of live processes serving that model); gauges declare how processes combine.
"""

import logging
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_PORT = 9100

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LOAD_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
PROBABILITY_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

INFERENCE_SECONDS = Histogram(
    "catdog_worker_inference_seconds",
    "Forward-pass time per image (a batch's time divided by its size), by queue",
    ["queue"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SECONDS = Histogram(
    "catdog_worker_batch_seconds",
    "Forward-pass time per batch, by queue",
    ["queue"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_WAIT_SECONDS = Histogram(
    "catdog_worker_queue_wait_seconds",
    "Time an item waited between being queued and a worker starting on it, by queue",
    ["queue"],
    buckets=WAIT_BUCKETS,
)
BATCH_WAIT_SECONDS = Histogram(
    "catdog_worker_batch_wait_seconds",
    "Time a micro-batch's first request waited in the batcher before its forward pass, by queue",
    ["queue"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "catdog_worker_batch_size",
    "Images per forward pass, by queue",
    ["queue"],
    buckets=BATCH_BUCKETS,
)
IMAGES = Counter(
    "catdog_worker_images",
    "Images processed, by queue and outcome (predicted or failed)",
    ["queue", "outcome"],
)
PREDICTIONS = Counter(
    "catdog_worker_predictions",
    "Predictions made (/predict and job items), by label and model version",
    ["label", "model_name", "model_version"],
)
PROBABILITY = Histogram(
    "catdog_worker_prediction_probability",
    "Winning probability of every prediction, by label",
    ["label"],
    buckets=PROBABILITY_BUCKETS,
)
MODEL_LOAD_SECONDS = Histogram(
    "catdog_worker_model_load_seconds",
    "Time to load and warm up a model (start or reload), by outcome (ok or failed)",
    ["outcome"],
    buckets=LOAD_BUCKETS,
)
MODEL_INFO = Gauge(
    "catdog_worker_model_info",
    "Model served: 1 per live process serving this name, version and device",
    ["model_name", "model_version", "device"],
    multiprocess_mode="livesum",
)
TASK_FAILURES = Counter(
    "catdog_worker_task_failures",
    "Tasks that raised or gave up, by task and reason",
    ["task", "reason"],
)
ITEM_FAILURES = Counter(
    "catdog_worker_item_failures",
    "Items that ended with an error, by reason (truncated, not_an_image, max_deliveries, ...)",
    ["reason"],
)
JOBS_FINISHED = Counter(
    "catdog_worker_jobs_finished",
    "Jobs a worker completed, by final status (succeeded or failed)",
    ["status"],
)
SWEEPER_ACTIONS = Counter(
    "catdog_worker_sweeper_actions",
    "What the sweeper did: chunks re-driven (dead_holder, stalled), job ends reported again,"
    " items failed as stalled",
    ["action"],
)

ALL_METRICS = (
    SWEEPER_ACTIONS,
    INFERENCE_SECONDS,
    BATCH_SECONDS,
    QUEUE_WAIT_SECONDS,
    BATCH_SIZE,
    IMAGES,
    PREDICTIONS,
    PROBABILITY,
    MODEL_LOAD_SECONDS,
    MODEL_INFO,
    TASK_FAILURES,
    ITEM_FAILURES,
    JOBS_FINISHED,
)

# The labels this process last set on MODEL_INFO, so a reload can zero them.
_model_labels: tuple[str, str, str] | None = None
_model_lock = threading.Lock()


# --- what the worker code calls ------------------------------------------------------------


def observe_batch(queue: str, size: int, seconds: float, gathered_s: float | None = None) -> None:
    """One forward pass of `size` images that took `seconds`; a micro-batch also says how
    long its first request waited to be gathered (`gathered_s`)."""
    if size <= 0:
        return
    if gathered_s is not None:
        BATCH_WAIT_SECONDS.labels(queue).observe(max(0.0, gathered_s))
    BATCH_SIZE.labels(queue).observe(size)
    BATCH_SECONDS.labels(queue).observe(seconds)
    per_item = INFERENCE_SECONDS.labels(queue)
    for _ in range(size):
        per_item.observe(seconds / size)


def observe_queue_wait(queue: str, seconds: float, items: int = 1) -> None:
    """`items` items that each waited `seconds` before a worker started on them."""
    histogram = QUEUE_WAIT_SECONDS.labels(queue)
    for _ in range(items):
        histogram.observe(max(0.0, seconds))


def observe_prediction(
    queue: str, label: str, probability: float, model_name: str, model_version: str
) -> None:
    IMAGES.labels(queue, "predicted").inc()
    PREDICTIONS.labels(label, model_name, model_version).inc()
    PROBABILITY.labels(label).observe(probability)


def observe_item_failure(queue: str, reason: str) -> None:
    IMAGES.labels(queue, "failed").inc()
    ITEM_FAILURES.labels(reason).inc()


def observe_task_failure(task: str, reason: str) -> None:
    TASK_FAILURES.labels(task, reason).inc()


def observe_sweeper(action: str, count: int = 1) -> None:
    SWEEPER_ACTIONS.labels(action).inc(count)


def observe_job_finished(status: str) -> None:
    JOBS_FINISHED.labels(status).inc()


def observe_model_load(seconds: float, ok: bool) -> None:
    MODEL_LOAD_SECONDS.labels("ok" if ok else "failed").observe(seconds)


def set_model(name: str, version: str, device: str) -> None:
    """This process now serves `name` `version` on `device` (the previous one is zeroed)."""
    global _model_labels
    labels = (name, version, device)
    with _model_lock:
        if _model_labels is not None and _model_labels != labels:
            MODEL_INFO.labels(*_model_labels).set(0)
        MODEL_INFO.labels(*labels).set(1)
        _model_labels = labels


# --- the exporter and the process bookkeeping ---------------------------------------------


def multiproc_dir() -> Path | None:
    """The directory of the multiprocess files, or None when the mode is off."""
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path else None


def multiprocess_active() -> bool:
    """True when prometheus_client chose memory-mapped values, i.e. the variable was set
    before it was imported (setting it later changes nothing)."""
    return multiproc_dir() is not None and values.ValueClass is not values.MutexValue


def reset_multiproc_dir(path: Path | None = None) -> None:
    """Delete the files of earlier runs. Main process only, before the pool forks."""
    path = path or multiproc_dir()
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def on_child_exit(pid: int, path: Path | None = None) -> None:
    """Forget the live gauges of a process that exited (Celery's worker_process_shutdown)."""
    path = path or multiproc_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, str(path))


_PID_IN_FILE = re.compile(r"_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def reap_dead_processes(path: Path) -> list[int]:
    """mark_process_dead for every process with live-gauge files that no longer exists
    (a child killed by SIGKILL or the OOM killer never runs its exit hook)."""
    pids = {int(m[1]) for f in path.glob("gauge_live*_*.db") if (m := _PID_IN_FILE.search(f.name))}
    dead = sorted(pid for pid in pids if not _alive(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))
    return dead


class _LiveProcessesCollector(Collector):
    """MultiProcessCollector that first forgets processes that died without telling."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inner = multiprocess.MultiProcessCollector(None, str(path))

    def collect(self) -> Iterable[Metric]:
        reap_dead_processes(self.path)
        return self.inner.collect()


def build_registry() -> CollectorRegistry:
    """The registry the exporter serves: every process's files in multiprocess mode, else
    this process's own metrics."""
    path = multiproc_dir()
    if path is None or not multiprocess_active():
        if path is not None:
            log.warning(
                f"{MULTIPROC_ENV} was set after prometheus_client was imported; "
                "worker metrics cover only this process"
            )
        return REGISTRY
    registry = CollectorRegistry()
    registry.register(_LiveProcessesCollector(path))
    return registry


def start_metrics_server(port: int = DEFAULT_PORT, addr: str = "0.0.0.0") -> WSGIServer | None:
    """Serve /metrics on `port` from a daemon thread of this (the main) process.

    Returns the HTTP server (its `server_port` is the real port when `port` is 0), or None
    when `port` is negative (metrics off)."""
    if port < 0:
        return None
    if multiproc_dir() is None:
        log.warning(
            f"{MULTIPROC_ENV} is not set: with a prefork pool the exporter sees no child's "
            "metrics; set it to an empty directory for this worker"
        )
    server, _thread = start_http_server(port, addr=addr, registry=build_registry())
    log.info(
        "worker metrics exporter listening",
        extra={"port": server.server_port, "multiprocess": multiprocess_active()},
    )
    return server
