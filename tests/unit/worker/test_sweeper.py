"""The sweeper's rules against a real Redis: a dead holder's chunk is queued again at once, a
stalled job is re-driven (never while it waits its turn or a live process works on it) and
given up after its re-drives, an unreported end is reported again, and one sweeper at a
time holds the lease."""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis

from common.store import jobs, keys, sweeps, workers
from common.store.jobs import NewJob
from common.store.ops import Store
from common.wire import Heartbeat, ItemResult, JobStatus
from worker.sweeper import SweepConfig, sweep

CONFIG = SweepConfig(interval_s=1, stall_timeout_s=60, max_redrives=2, bulk_queue="bulk")
PLAN = [[0, 1, 2], [3, 4, 5], [6]]


@dataclass
class Recorder:
    chunks: list[tuple[str, int, list[int]]] = field(default_factory=list)
    ends: list[str] = field(default_factory=list)

    def chunk(self, job_id: str, chunk: int, indices: list[int], request_id: str | None) -> None:
        self.chunks.append((job_id, chunk, indices))

    def job_ended(self, job_id: str) -> None:
        self.ends.append(job_id)


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    store = Store.from_url(redis_url)
    yield store
    store.redis.close()


@pytest.fixture
def publish() -> Recorder:
    return Recorder()


def new_job(store: Store, total: int = 7, plan: list[list[int]] | None = None) -> str:
    job_id = f"job{time.time_ns()}"
    names = [f"{i}.jpg" for i in range(total)]
    plan = PLAN if plan is None else plan
    job = NewJob(job_id, names, [], len(plan), None, "req-1", plan=plan)
    store(jobs.create(job, ttl_s=600, tombstone_ttl_s=60))
    return job_id


def ok(index: int) -> ItemResult:
    return ItemResult.failure(index, "not_an_image", "stands in for any written result")


def quiet_for(client: redis.Redis, job_id: str, seconds: float) -> None:
    """As if the job's last sign of life was `seconds` ago."""
    now = float(client.time()[0])
    client.zadd(keys.WATCHED_JOBS, {job_id: now - seconds}, xx=True)


def beat(store: Store, worker_id: str) -> None:
    hb = Heartbeat(worker_id=worker_id, hostname="w@h", pid=1, queues=["bulk"], state="ready")
    store(workers.beat(hb, ttl_s=30))


def test_a_chunk_whose_holder_has_no_heartbeat_is_queued_again_with_its_unfinished_items(
    store: Store, publish: Recorder
) -> None:
    job_id = new_job(store)
    store(jobs.start_chunk(job_id, 1, "w@h:dead"))
    store(jobs.complete(job_id, [ok(3)]))

    report = sweep(store, publish, CONFIG)

    assert publish.chunks == [(job_id, 1, [4, 5])]
    assert report.dead_holder == [(job_id, 1)]
    assert store.redis.hlen(keys.holders(job_id)) == 0  # not queued again by the next pass
    sweep(store, publish, CONFIG)
    assert len(publish.chunks) == 1


def test_a_chunk_whose_holder_is_alive_is_left_alone_however_long_it_runs(
    store: Store, publish: Recorder
) -> None:
    job_id = new_job(store)
    beat(store, "w@h:7")
    store(jobs.start_chunk(job_id, 0, "w@h:7"))
    quiet_for(store.redis, job_id, 3600)

    sweep(store, publish, CONFIG)

    assert publish.chunks == []


def test_a_chunk_waiting_in_the_prefetch_of_a_host_with_no_live_process_is_queued_again(
    store: Store, publish: Recorder
) -> None:
    job_id = new_job(store)
    beat(store, "w@h:7")  # another host lives; nothing of "v@h" beats
    store(jobs.reserve_chunk(job_id, 2, workers.host_holder("v@h")))

    report = sweep(store, publish, CONFIG)

    assert publish.chunks == [(job_id, 2, [6])]
    assert report.dead_holder == [(job_id, 2)]
    assert store.redis.hlen(keys.holders(job_id)) == 0


@pytest.mark.parametrize(
    ("quiet_s", "driven_again"),
    [
        (CONFIG.stall_timeout_s - 5, []),
        # Past the stall timeout the mark does not hold the rule off: one whose release was
        # lost (Redis down as its task ended) would otherwise keep the job stuck.
        (CONFIG.stall_timeout_s + 1, [0, 1, 2]),
    ],
)
def test_a_chunk_in_a_live_hosts_prefetch_is_left_to_it_until_the_job_stalls(
    store: Store, publish: Recorder, quiet_s: float, driven_again: list[int]
) -> None:
    job_id = new_job(store)
    beat(store, "w@h:7")  # a process of host "w@h"
    store(jobs.reserve_chunk(job_id, 2, workers.host_holder("w@h")))
    quiet_for(store.redis, job_id, quiet_s)

    report = sweep(store, publish, CONFIG)

    assert [chunk for _, chunk, _ in publish.chunks] == driven_again
    assert report.stalled == [(job_id, chunk) for chunk in driven_again]


def test_a_stalled_job_has_every_unfinished_chunk_queued_again(
    store: Store, publish: Recorder
) -> None:
    job_id = new_job(store)
    store(jobs.complete(job_id, [ok(i) for i in (0, 1, 2, 4)]))
    quiet_for(store.redis, job_id, CONFIG.stall_timeout_s + 1)

    report = sweep(store, publish, CONFIG)

    assert publish.chunks == [(job_id, 1, [3, 5]), (job_id, 2, [6])]
    assert report.stalled == [(job_id, 1), (job_id, 2)]
    assert store(jobs.read(job_id)).redrives == 1
    sweep(store, publish, CONFIG)  # the re-drive counts as a sign of life
    assert len(publish.chunks) == 2


@pytest.mark.parametrize("why", ["waiting in the queue", "quiet, but not long enough"])
def test_a_job_that_is_only_waiting_is_not_driven_again(
    store: Store, publish: Recorder, why: str
) -> None:
    job_id = new_job(store)
    if why == "waiting in the queue":
        store.redis.rpush(CONFIG.bulk_queue, b"another job's chunk")
        quiet_for(store.redis, job_id, CONFIG.stall_timeout_s + 1)
    else:
        quiet_for(store.redis, job_id, CONFIG.stall_timeout_s - 5)

    sweep(store, publish, CONFIG)

    assert publish.chunks == []


def test_a_job_still_stalled_after_its_redrives_fails_its_unfinished_items_and_ends(
    store: Store, publish: Recorder
) -> None:
    job_id = new_job(store)
    store(jobs.complete(job_id, [ok(0)]))
    for _ in range(CONFIG.max_redrives):
        quiet_for(store.redis, job_id, CONFIG.stall_timeout_s + 1)
        sweep(store, publish, CONFIG)
    quiet_for(store.redis, job_id, CONFIG.stall_timeout_s + 1)

    report = sweep(store, publish, CONFIG)

    assert report.failed_stalled == {job_id: 6}
    record = store(jobs.read(job_id))
    assert record.status is JobStatus.FAILED and record.pending == 0
    page = store(jobs.page(job_id, 0, 10))
    reasons = [r.error.reason for r in page.results[1:] if r and r.error]
    assert reasons == ["stalled"] * 6
    assert publish.ends == [job_id]


def test_an_ended_job_whose_end_was_never_reported_is_reported_again_once_per_stall(
    store: Store, publish: Recorder
) -> None:
    job_id = new_job(store, total=1, plan=[[0]])
    assert store(jobs.complete(job_id, [ok(0)])).finished  # ...and the worker died here
    sweep(store, publish, CONFIG)
    assert publish.ends == []  # not yet: the report may still be on its way

    quiet_for(store.redis, job_id, CONFIG.stall_timeout_s + 1)
    sweep(store, publish, CONFIG)
    sweep(store, publish, CONFIG)
    assert publish.ends == [job_id]

    store(jobs.settle(job_id))  # what the report does once the callback is done
    quiet_for(store.redis, job_id, CONFIG.stall_timeout_s + 1)
    sweep(store, publish, CONFIG)
    assert publish.ends == [job_id]
    assert store.redis.zscore(keys.WATCHED_JOBS, job_id) is None


def test_a_callback_retry_waiting_its_countdown_is_not_reported_twice(
    store: Store, publish: Recorder
) -> None:
    job_id = new_job(store, total=1, plan=[[0]])
    store(jobs.complete(job_id, [ok(0)]))
    quiet_for(store.redis, job_id, CONFIG.stall_timeout_s + 1)
    store(jobs.expect_news(job_id, 30))  # the report's retry in 30 s

    sweep(store, publish, CONFIG)

    assert publish.ends == []


def test_an_expired_job_is_no_longer_watched(store: Store, publish: Recorder) -> None:
    job_id = new_job(store)
    store.redis.delete(keys.job(job_id))

    report = sweep(store, publish, CONFIG)

    assert report.forgotten == [job_id]
    assert store.redis.zcard(keys.WATCHED_JOBS) == 0


def test_one_sweeper_holds_the_lease_until_it_lapses(store: Store) -> None:
    assert store(sweeps.lease("a", ttl_s=0.3))
    assert store(sweeps.lease("a", ttl_s=0.3))  # renewed
    assert not store(sweeps.lease("b", ttl_s=0.3))
    time.sleep(0.4)
    assert store(sweeps.lease("b", ttl_s=0.3))
