"""The sweeper: the one owner of recovery for jobs whose work or end report was lost.

Celery on Redis gives a message back only after the visibility timeout (an hour), and some
faults lose a message for good. The sweeper does not wait for either. Each pass looks at
every watched job (`common.store.sweeps`) and applies three rules:

1. **A chunk held by a dead process** (its holder's heartbeat has expired: the worker host
   died, its link went down, the process was killed by the hard time limit) is published
   again at once, with the items it had not finished. So is a chunk whose message waited
   in the prefetch of a host none of whose processes beats any more (`jobs.reserve_chunk`).
2. **A stalled job**: no sign of life for `stall_timeout_s`, no live process holding any of
   its chunks (a host's mark on a chunk waiting in its prefetch does not count) and nothing
   waiting in the bulk queue (so it is not merely waiting its turn):
   its chunk messages were lost (Redis lost its last second of writes, the gateway died
   between creating the job and queueing it, a task raised an error nobody retries). Every
   chunk with unfinished items is published again. After `max_redrives` such re-drives the
   unfinished items fail with reason `stalled` and the job ends.
3. **An ended job whose end was not reported** (the worker died between the last item and
   queueing the report, or while a callback retry waited): the report is queued again. The
   report (worker.tasks.job_ended) counts the end once and never posts a delivered callback
   twice.

Re-publishing is always safe: a result is written once per index, a chunk of an ended job
is skipped, and attempts are counted per item (`max_deliveries`).

One bulk worker's main process sweeps at a time, under a lease in Redis; if it dies another
takes the lease over within three intervals.
"""

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis
from kombu.exceptions import OperationalError

from common.settings import Settings
from common.store import jobs, sweeps, workers
from common.store.ops import Store
from common.wire import ItemResult
from worker import fork_guard, metrics

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def chunk(
        self, job_id: str, chunk: int, indices: list[int], request_id: str | None
    ) -> None: ...

    def job_ended(self, job_id: str) -> None: ...


@dataclass(frozen=True)
class SweepConfig:
    interval_s: float
    stall_timeout_s: float
    max_redrives: int
    bulk_queue: str

    @classmethod
    def from_settings(cls, settings: Settings) -> "SweepConfig":
        return cls(
            settings.sweep_interval_s,
            settings.stall_timeout_s,
            settings.max_redrives,
            settings.bulk_queue,
        )


@dataclass
class SweepReport:
    """What one pass did (also counted in `catdog_worker_sweeper_actions_total`)."""

    dead_holder: list[tuple[str, int]] = field(default_factory=list)  # job, chunk
    stalled: list[tuple[str, int]] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)  # job ends queued again
    failed_stalled: dict[str, int] = field(default_factory=dict)  # job -> items failed
    forgotten: list[str] = field(default_factory=list)  # expired jobs no longer watched


def sweep(store: Store, publish: Publisher, config: SweepConfig) -> SweepReport:
    """One pass over every watched job."""
    report = SweepReport()
    live = workers.live_holders(store(workers.live()))
    watched = store(sweeps.watched())
    for job_id, last_seen in watched.jobs:
        _sweep_job(store, publish, config, report, job_id, watched.now - last_seen, live)
    for action in ("dead_holder", "stalled", "reported", "forgotten"):
        if count := len(getattr(report, action)):
            metrics.observe_sweeper(action, count)
    if failed := sum(report.failed_stalled.values()):
        metrics.observe_sweeper("failed_stalled", failed)
    return report


def _sweep_job(
    store: Store,
    publish: Publisher,
    config: SweepConfig,
    report: SweepReport,
    job_id: str,
    quiet_s: float,
    live: set[str],
) -> None:
    state = store(sweeps.state(job_id, config.bulk_queue))
    record = state.record
    if record is None:  # expired: nothing is left to recover
        store(jobs.settle(job_id))
        report.forgotten.append(job_id)
        return
    stalled = quiet_s > config.stall_timeout_s
    if record.ended:
        if stalled:  # rule 3
            log.warning("job end not reported; reporting it again", extra={"job_id": job_id})
            store(jobs.expect_news(job_id, 0))
            publish.job_ended(job_id)
            report.reported.append(job_id)
        return
    dead = {chunk: holder for chunk, holder in state.holders.items() if holder not in live}
    if dead:  # rule 1
        plan = _plan(store, record)
        for chunk, holder in sorted(dead.items()):
            if _redrive(store, publish, record, chunk, plan.get(chunk, [])):
                report.dead_holder.append((job_id, chunk))
            store(jobs.release_chunk(job_id, chunk, holder))
        log.warning(
            "chunks of a dead worker process queued again",
            extra={"job_id": job_id, "chunks": sorted(dead), "holders": sorted(set(dead.values()))},
        )
        return
    # A host's mark on a waiting chunk does not hold the stall rule off: one whose release
    # was lost (Redis down as its task ended) would keep a live host's job stuck. At worst
    # a chunk that waited this long in a prefetch runs twice, and each item is written once.
    held = any(not workers.is_host_holder(holder) for holder in state.holders.values())
    if not stalled or held or state.queued_messages:
        return
    # rule 2
    if record.redrives >= config.max_redrives:
        failed = _fail_stalled(store, publish, record, config)
        report.failed_stalled[job_id] = failed
        return
    redrives = store(sweeps.count_redrive(job_id))
    store(jobs.expect_news(job_id, 0))
    for chunk, indices in sorted(_plan(store, record).items()):
        if _redrive(store, publish, record, chunk, indices):
            report.stalled.append((job_id, chunk))
    log.warning(
        "stalled job driven again",
        extra={"job_id": job_id, "quiet_s": round(quiet_s, 1), "redrives": redrives},
    )


def _plan(store: Store, record: jobs.JobRecord) -> dict[int, list[int]]:
    # A job created before plans were stored is driven as one chunk.
    return store(sweeps.plan(record.job_id)) or {0: list(range(record.total))}


def _redrive(
    store: Store, publish: Publisher, record: jobs.JobRecord, chunk: int, indices: Sequence[int]
) -> bool:
    pending = store(jobs.unfinished(record.job_id, indices))
    if pending:
        publish.chunk(record.job_id, chunk, pending, record.request_id)
    return bool(pending)


def _fail_stalled(
    store: Store, publish: Publisher, record: jobs.JobRecord, config: SweepConfig
) -> int:
    pending = store(jobs.unfinished(record.job_id, range(record.total)))
    message = (
        f"the job made no progress for {config.stall_timeout_s:g} s after being driven again"
        f" {record.redrives} times; giving up"
    )
    failures = [ItemResult.failure(i, "stalled", message) for i in pending]
    completion = store(jobs.complete(record.job_id, failures))
    store(jobs.drop_images(record.job_id, pending))
    log.error("stalled job given up", extra={"job_id": record.job_id, "items_failed": len(pending)})
    if completion.finished:
        publish.job_ended(record.job_id)
    return completion.written


class Sweeper:
    """Runs `sweep` every `interval_s` in a daemon thread while this process holds the
    lease. Redis or broker outages skip a pass; they never stop the thread."""

    def __init__(self, store: Store, publish: Publisher, config: SweepConfig, holder: str):
        self.store = store
        self.publish = publish
        self.config = config
        self.holder = holder
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        lease_s = 3 * self.config.interval_s
        while not self._stopped.wait(self.config.interval_s):
            started = time.perf_counter()
            try:
                with fork_guard.held():  # no pool process is forked mid-publish
                    if not self.store(sweeps.lease(self.holder, lease_s)):
                        continue
                    report = sweep(self.store, self.publish, self.config)
            except (redis.RedisError, OperationalError, OSError) as exc:
                log.warning("sweep skipped", extra={"error": str(exc)})
                continue
            except Exception:  # a bug here must not end recovery for good
                log.exception("sweep failed")
                continue
            if report.dead_holder or report.stalled or report.reported or report.failed_stalled:
                log.info(
                    "sweep done",
                    extra={
                        "redriven": len(report.dead_holder) + len(report.stalled),
                        "reported": len(report.reported),
                        "failed_stalled": sum(report.failed_stalled.values()),
                        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
