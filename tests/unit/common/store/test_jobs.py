"""Jobs against a real Redis: idempotent writes, derived counts, one final transition, cancel
refusing late writes, expiry with a tombstone."""

import time

import pytest
import redis

from common.errors import JobExpiredError, JobFinishedError, JobNotFoundError
from common.store import jobs, keys
from common.store.jobs import ChunkStart, NewJob
from common.wire import Classification, ItemResult, JobStatus, ModelRef
from tests.unit.common.store.conftest import Run


def create(run: Run, total: int, rejected: list[ItemResult] | None = None, ttl_s: int = 60) -> str:
    job = NewJob(
        job_id=f"job{time.time_ns()}",
        names=[f"{i}.jpg" for i in range(total)],
        rejected=rejected or [],
        chunks=1,
        callback_url=None,
        request_id="req-1",
    )
    run(jobs.create(job, ttl_s, tombstone_ttl_s=60))
    return job.job_id


def ok(index: int, label: str = "cat") -> ItemResult:
    other = "dog" if label == "cat" else "cat"
    found = Classification(
        label=label,
        probability=0.9,
        probabilities={label: 0.9, other: 0.1},
        model=ModelRef("catdog", "3"),
    )
    return ItemResult(index=index, prediction=found)


def test_a_result_written_twice_counts_once(run: Run) -> None:
    job_id = create(run, 3)
    first = run(jobs.complete(job_id, [ok(0), ok(1)]))
    again = run(jobs.complete(job_id, [ok(0, "dog"), ok(1)]))
    assert (first.written, again.written) == (2, 0)
    record = run(jobs.read(job_id))
    assert (record.status, record.done, record.failed) == (JobStatus.RUNNING, 2, 0)
    page = run(jobs.page(job_id, 0, 10))
    assert page.results[0] == ok(0)  # the first write stands
    assert page.results[2] is None
    assert page.names == ["0.jpg", "1.jpg", "2.jpg"]


def test_the_job_ends_exactly_once_when_every_item_has_a_result(run: Run) -> None:
    job_id = create(run, 2)
    assert not run(jobs.complete(job_id, [ok(0)])).finished
    assert run(jobs.complete(job_id, [ItemResult.failure(1, "truncated", "cut")])).finished
    assert not run(jobs.complete(job_id, [ok(1)])).finished  # a redelivery after the end
    record = run(jobs.read(job_id))
    assert (record.status, record.done, record.failed) == (JobStatus.SUCCEEDED, 1, 1)
    assert record.finished_at is not None and record.started_at is not None


def test_a_job_whose_every_item_failed_ends_failed(run: Run) -> None:
    job_id = create(run, 1)
    run(jobs.complete(job_id, [ItemResult.failure(0, "empty", "0 bytes")]))
    assert run(jobs.read(job_id)).status is JobStatus.FAILED


def test_a_job_refused_whole_at_upload_is_created_failed(run: Run) -> None:
    job_id = create(run, 1, [ItemResult.failure(0, "too_large", "big")])
    record = run(jobs.read(job_id))
    assert (record.status, record.failed, record.pending) == (JobStatus.FAILED, 1, 0)
    assert record.ended


def test_cancel_refuses_every_later_write(run: Run, raw: redis.Redis) -> None:
    job_id = create(run, 3)
    run(jobs.complete(job_id, [ok(0)]))
    record, changed = run(jobs.cancel(job_id, ""))
    assert changed and record.status is JobStatus.CANCELLED and record.done == 1
    late = run(jobs.complete(job_id, [ok(1), ok(2)]))
    assert not late.accepted and late.written == 0
    assert raw.hlen(keys.results(job_id)) == 1
    again, changed = run(jobs.cancel(job_id, ""))
    assert not changed and again.done == 1 and again.status is JobStatus.CANCELLED


def test_cancelling_a_finished_job_raises(run: Run) -> None:
    job_id = create(run, 1)
    run(jobs.complete(job_id, [ok(0)]))
    with pytest.raises(JobFinishedError):
        run(jobs.cancel(job_id, ""))


def test_cancelling_an_unknown_job_is_not_found(run: Run) -> None:
    with pytest.raises(JobNotFoundError):
        run(jobs.cancel("never-existed", ""))


def test_an_expired_job_is_gone_but_its_tombstone_tells_410_from_404(
    run: Run, raw: redis.Redis
) -> None:
    job_id = create(run, 2, ttl_s=1)
    for key in (keys.job(job_id), keys.names(job_id)):
        assert 0 < raw.ttl(key) <= 1
    assert raw.ttl(keys.tombstone(job_id)) > 1
    time.sleep(1.2)
    with pytest.raises(JobExpiredError):
        run(jobs.page(job_id, 0, 10))
    with pytest.raises(JobExpiredError):
        run(jobs.cancel(job_id, ""))
    with pytest.raises(JobNotFoundError):
        run(jobs.read("never-existed"))
    assert not run(jobs.complete(job_id, [ok(0)])).accepted  # a late worker writes nothing
    assert not raw.exists(keys.results(job_id))


def test_results_expire_with_their_job(run: Run, raw: redis.Redis) -> None:
    job_id = create(run, 2)
    run(jobs.complete(job_id, [ok(0)]))
    assert 0 < raw.ttl(keys.results(job_id)) <= 60


def test_chunk_deliveries_and_item_attempts_are_counted(run: Run, raw: redis.Redis) -> None:
    job_id = create(run, 2)
    assert run(jobs.start_chunk(job_id, 0)) == ChunkStart(JobStatus.RUNNING, 1, "")
    assert run(jobs.start_chunk(job_id, 0)) == ChunkStart(JobStatus.RUNNING, 2, "")
    assert run(jobs.count_attempts(job_id, [0, 1])) == [1, 1]
    assert run(jobs.count_attempts(job_id, [1])) == [2]
    assert 0 < raw.ttl(keys.attempts(job_id)) <= 60
    assert run(jobs.start_chunk("missing", 0)) == ChunkStart(None, 0, "")


def test_a_hosts_mark_on_a_waiting_chunk_gives_way_to_the_process_that_starts_it(
    run: Run, raw: redis.Redis
) -> None:
    job_id = create(run, 2)
    holders = keys.holders(job_id)
    assert run(jobs.reserve_chunk(job_id, 0, "w@h:reserved")) is True
    assert raw.hget(holders, "0") == b"w@h:reserved"
    assert 0 < raw.ttl(holders) <= 60
    # A second message of the same chunk does not take it from its holder.
    assert run(jobs.reserve_chunk(job_id, 0, "v@h:reserved")) is False
    run(jobs.start_chunk(job_id, 0, "w@h:7"))
    assert raw.hget(holders, "0") == b"w@h:7"
    assert run(jobs.reserve_chunk(job_id, 0, "w@h:reserved")) is False  # nor from a process
    assert run(jobs.release_chunk(job_id, 0, "w@h:8", "w@h:reserved")) is False
    assert run(jobs.release_chunk(job_id, 0, "w@h:7", "w@h:reserved")) is True
    assert raw.hlen(holders) == 0


def test_a_mark_left_by_a_chunk_no_process_started_is_released_by_its_host(
    run: Run, raw: redis.Redis
) -> None:
    job_id = create(run, 2)
    run(jobs.reserve_chunk(job_id, 1, "w@h:reserved"))
    assert run(jobs.release_chunk(job_id, 1, "w@h:reserved")) is True
    assert raw.hlen(keys.holders(job_id)) == 0


def test_no_chunk_of_an_ended_or_missing_job_is_marked(run: Run, raw: redis.Redis) -> None:
    job_id = create(run, 1)
    run(jobs.complete(job_id, [ok(0)]))
    assert run(jobs.reserve_chunk(job_id, 0, "w@h:reserved")) is False
    assert run(jobs.reserve_chunk("missing", 0, "w@h:reserved")) is False
    assert raw.hlen(keys.holders(job_id)) == 0


def test_images_are_read_and_dropped_by_index(run: Run) -> None:
    job_id = create(run, 3)
    for i in range(3):
        run(jobs.store_image(job_id, i, f"img{i}".encode(), ttl_s=60))
    assert run(jobs.images(job_id, [2, 0])) == [b"img2", b"img0"]
    run(jobs.drop_images(job_id, [0]))
    assert run(jobs.images(job_id, [0, 1])) == [None, b"img1"]
    run(jobs.discard_upload(job_id, 3))
    assert run(jobs.images(job_id, [0, 1, 2])) == [None, None, None]
    assert run(jobs.unfinished(job_id, [0, 1])) == [0, 1]


def test_the_end_of_a_job_is_claimed_once_and_never_recreates_an_expired_job(
    run: Run, raw: redis.Redis
) -> None:
    job_id = create(run, 1)
    assert [run(jobs.claim_end(job_id)) for _ in range(3)] == [True, False, False]
    assert not run(jobs.claim_end("gone"))
    assert not run(jobs.set_callback_status("gone", "delivered"))
    assert not raw.exists(keys.job("gone"))
    assert run(jobs.set_callback_status(job_id, "delivered"))
    assert run(jobs.read(job_id)).callback_status == "delivered"
