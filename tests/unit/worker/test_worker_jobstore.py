"""The Redis job store against a real Redis: idempotent writes, derived counts, one final
transition, cancel refusing late writes, expiry with a tombstone, heartbeats."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from common.jobstore import (
    AsyncJobStore,
    Heartbeat,
    ItemResult,
    JobExpiredError,
    JobFinishedError,
    JobNotFoundError,
    JobStatus,
    JobStore,
    Keys,
    NewJob,
)

T = TypeVar("T")


def run(redis_url: str, use: Callable[[AsyncJobStore], Awaitable[T]], ttl_s: int = 60) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await use(AsyncJobStore(client, ttl_s, tombstone_ttl_s=60))
        finally:
            await client.aclose()

    return asyncio.run(main())


def create(redis_url: str, total: int, rejected: list[ItemResult] | None = None, **kw: Any) -> str:
    job = NewJob(
        job_id=f"job{time.time_ns()}",
        names=[f"{i}.jpg" for i in range(total)],
        rejected=rejected or [],
        chunks=1,
        callback_url=kw.get("callback_url"),
        request_id="req-1",
    )
    run(redis_url, lambda s: s.create_job(job), ttl_s=kw.get("ttl_s", 60))
    return job.job_id


def ok(index: int, label: str = "cat") -> ItemResult:
    return ItemResult(index, label, 0.9, {"cat": 0.9, "dog": 0.1}, "catdog", "3")


def test_a_result_written_twice_counts_once(store: JobStore, redis_url: str) -> None:
    job_id = create(redis_url, 3)
    first = store.complete(job_id, [ok(0), ok(1)])
    again = store.complete(job_id, [ok(0, "dog"), ok(1)])
    assert (first.written, again.written) == (2, 0)
    record = store.job(job_id)
    assert record is not None
    assert (record.status, record.done, record.failed) == (JobStatus.RUNNING, 2, 0)
    page = run(redis_url, lambda s: s.page(job_id, 0, 10))
    assert page.results[0] == ok(0)  # the first write stands
    assert page.results[2] is None


def test_the_job_ends_exactly_once_when_every_item_has_a_result(
    store: JobStore, redis_url: str
) -> None:
    job_id = create(redis_url, 2)
    assert not store.complete(job_id, [ok(0)]).finished
    assert store.complete(job_id, [ItemResult.failure(1, "truncated", "cut")]).finished
    assert not store.complete(job_id, [ok(1)]).finished  # a redelivery after the end
    record = store.job(job_id)
    assert record is not None
    assert (record.status, record.done, record.failed) == (JobStatus.SUCCEEDED, 1, 1)
    assert record.finished_at is not None and record.started_at is not None


def test_a_job_whose_every_item_failed_ends_failed(store: JobStore, redis_url: str) -> None:
    job_id = create(redis_url, 1)
    store.complete(job_id, [ItemResult.failure(0, "empty", "0 bytes")])
    record = store.job(job_id)
    assert record is not None and record.status is JobStatus.FAILED


def test_a_job_refused_whole_at_upload_is_created_failed(redis_url: str) -> None:
    rejected = [ItemResult.failure(0, "too_large", "big")]
    job_id = create(redis_url, 1, rejected)
    record = run(redis_url, lambda s: s.job(job_id))
    assert (record.status, record.failed, record.pending) == (JobStatus.FAILED, 1, 0)


def test_cancel_refuses_every_later_write(store: JobStore, redis_url: str) -> None:
    job_id = create(redis_url, 3)
    store.complete(job_id, [ok(0)])
    record, changed = run(redis_url, lambda s: s.cancel(job_id))
    assert changed and record.status is JobStatus.CANCELLED and record.done == 1
    late = store.complete(job_id, [ok(1), ok(2)])
    assert not late.accepted and late.written == 0
    assert store.redis.hlen(Keys.results(job_id)) == 1
    again, changed = run(redis_url, lambda s: s.cancel(job_id))
    assert not changed and again.done == 1


def test_cancelling_a_finished_job_raises(store: JobStore, redis_url: str) -> None:
    job_id = create(redis_url, 1)
    store.complete(job_id, [ok(0)])
    with pytest.raises(JobFinishedError):
        run(redis_url, lambda s: s.cancel(job_id))


def test_an_expired_job_is_gone_but_its_tombstone_tells_410_from_404(
    store: JobStore, redis_url: str
) -> None:
    job_id = create(redis_url, 2, ttl_s=1)
    for key in (Keys.job(job_id), Keys.names(job_id)):
        assert 0 < store.redis.ttl(key) <= 1
    assert store.redis.ttl(Keys.tombstone(job_id)) > 1
    time.sleep(1.2)
    with pytest.raises(JobExpiredError):
        run(redis_url, lambda s: s.page(job_id, 0, 10))
    with pytest.raises(JobNotFoundError):
        run(redis_url, lambda s: s.job("never-existed"))
    assert not store.complete(job_id, [ok(0)]).accepted  # a late worker writes nothing
    assert not store.redis.exists(Keys.results(job_id))


def test_results_expire_with_their_job(store: JobStore, redis_url: str) -> None:
    job_id = create(redis_url, 2)
    store.complete(job_id, [ok(0)])
    assert 0 < store.redis.ttl(Keys.results(job_id)) <= 60


def test_chunk_deliveries_and_item_attempts_are_counted(store: JobStore, redis_url: str) -> None:
    job_id = create(redis_url, 2)
    assert store.start_chunk(job_id, 0) == (JobStatus.RUNNING, 1)
    assert store.start_chunk(job_id, 0) == (JobStatus.RUNNING, 2)
    assert store.count_attempts(job_id, [0, 1]) == [1, 1]
    assert store.count_attempts(job_id, [1]) == [2]
    assert store.start_chunk("missing", 0) == (None, 0)


def test_an_idempotency_key_is_reserved_once_and_released_only_by_its_job(
    redis_url: str,
) -> None:
    async def scenario(s: AsyncJobStore) -> list[object]:
        first = await s.reserve_idempotency("k", "job-1")
        second = await s.reserve_idempotency("k", "job-2")
        await s.release_idempotency("k", "job-2")  # not its key: no effect
        kept = await s.idempotent_job("k")
        await s.release_idempotency("k", "job-1")
        return [first, second, kept, await s.idempotent_job("k")]

    assert run(redis_url, scenario) == [True, False, "job-1", None]


def test_a_prediction_reply_reaches_the_waiting_gateway(store: JobStore, redis_url: str) -> None:
    async def scenario(s: AsyncJobStore) -> dict[str, Any] | None:
        await s.put_predict_image("p1", b"bytes", ttl_s=10)
        assert store.predict_image("p1") == b"bytes"
        store.reply_predict("p1", {"ok": True})
        return await s.await_predict_reply("p1", timeout_s=1)

    assert run(redis_url, scenario) == {"ok": True}
    assert store.predict_image("p1") is None  # consumed
    assert run(redis_url, lambda s: s.await_predict_reply("p2", timeout_s=0.2)) is None


def test_heartbeats_live_for_their_ttl(store: JobStore, redis_url: str) -> None:
    beat = Heartbeat("w@h:1", "w@h", 1, ["realtime"], "ready", model_version="3")
    store.beat(beat, ttl_s=0.5)
    assert [hb.worker_id for hb in store.live_workers()] == ["w@h:1"]
    assert [hb.model_version for hb in run(redis_url, lambda s: s.live_workers())] == ["3"]
    time.sleep(0.7)
    assert store.live_workers() == []
    store.beat(beat, ttl_s=5)
    store.forget_worker("w@h:1")
    assert store.live_workers() == []
    assert store.redis.zcard(Keys.workers) == 0
