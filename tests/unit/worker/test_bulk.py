"""Bulk chunks with a fake engine against a real Redis: redelivery skips what is done, a
poison item fails after max_deliveries, a failing batch isolates its bad item, and a cancel
stops the chunk; every batch, prediction and failure is counted, and written job items are
recorded for feedback."""

import time

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from common import quality as q
from common.quality import QualityConfig
from common.store import jobs, keys
from common.store.ops import Store
from common.wire import Classification, ItemResult, JobStatus
from tests.unit.worker.fakes import FAKE_MODEL, LIMITS, FakeEngine, counted, jpeg, red_png
from worker.bulk import ChunkOutcome, run_chunk


def make_job(store: Store, images: list[bytes], job_id: str = "job1") -> str:
    store.redis.hset(
        keys.job(job_id),
        mapping={"status": "queued", "total": len(images), "created_at": "1.0"},
    )
    store.redis.expire(keys.job(job_id), 60)
    for i, data in enumerate(images):
        store.redis.set(keys.image(job_id, i), data)
    return job_id


def chunk(
    store: Store, engine: FakeEngine, job_id: str, indices: list[int], **kw: int
) -> ChunkOutcome:
    return run_chunk(
        store,
        engine,
        job_id,
        0,
        indices,
        batch_size=kw.get("batch_size", 4),
        max_deliveries=kw.get("max_deliveries", 3),
        limits=LIMITS,
    )


def results(store: Store, job_id: str) -> dict[int, ItemResult]:
    raw = store.redis.hgetall(keys.results(job_id))
    return {int(k): ItemResult.stored(int(k), v) for k, v in raw.items()}


def label_of(result: ItemResult) -> str | None:
    return result.prediction.label if result.prediction else None


def test_a_chunk_runs_batched_and_records_every_item(store: Store) -> None:
    job_id = make_job(store, [jpeg()] * 6 + [b""])
    engine = FakeEngine()
    outcome = chunk(store, engine, job_id, list(range(7)))
    assert outcome.finished and outcome.written == 7
    assert engine.batches == [4, 2]  # item 6 failed to decode, never reached the model
    found = results(store, job_id)
    assert found[6].error is not None and found[6].error.reason == "empty"
    assert found[0].prediction is not None and found[0].prediction.model == FAKE_MODEL
    assert label_of(found[0]) == "dog"
    assert store(jobs.status(job_id)) is JobStatus.SUCCEEDED
    assert not store.redis.exists(*[keys.image(job_id, i) for i in range(7)])  # freed


def test_a_redelivered_chunk_skips_done_items_and_runs_the_rest_one_by_one(
    store: Store,
) -> None:
    job_id = make_job(store, [jpeg()] * 5)
    store(jobs.start_chunk(job_id, 0))  # the first delivery, whose worker died...
    cat = Classification(
        label="cat", probability=0.6, probabilities={"cat": 0.6, "dog": 0.4}, model=FAKE_MODEL
    )
    store(jobs.complete(job_id, [ItemResult(index=0, prediction=cat)]))
    engine = FakeEngine()
    outcome = chunk(store, engine, job_id, list(range(5)))
    assert outcome.written == 4 and outcome.finished
    assert engine.batches == [1, 1, 1, 1]
    assert label_of(results(store, job_id)[0]) == "cat"  # not overwritten
    record = store(jobs.read(job_id))
    assert (record.done, record.failed) == (5, 0)


def test_a_poison_item_ends_failed_after_max_deliveries_without_running(
    store: Store,
) -> None:
    job_id = make_job(store, [jpeg()] * 3)
    # Item 1 killed its worker three times already (its attempts were counted each time).
    store.redis.hset(keys.attempts(job_id), "1", 3)
    engine = FakeEngine()
    chunk(store, engine, job_id, [0, 1, 2], max_deliveries=3)
    found = results(store, job_id)
    assert found[1].error is not None and found[1].error.reason == "max_deliveries"
    assert found[0].ok and found[2].ok
    assert engine.batches == [2]


def test_a_failing_batch_is_retried_item_by_item_so_only_the_bad_item_fails(
    store: Store,
) -> None:
    job_id = make_job(store, [jpeg(), red_png(), jpeg()])
    engine = FakeEngine(fail_on_red=True)
    chunk(store, engine, job_id, [0, 1, 2])
    found = results(store, job_id)
    assert found[1].error is not None and found[1].error.reason == "inference_failed"
    assert found[0].ok and found[2].ok
    assert engine.batches == [3, 1, 1, 1]


def test_a_cancel_during_a_chunk_stops_it_and_later_items_never_finish(
    store: Store,
) -> None:
    job_id = make_job(store, [jpeg()] * 8)
    engine = FakeEngine()
    # The cancel lands while the first batch is in the model.

    def cancel() -> None:
        store.redis.hset(keys.job(job_id), "status", "cancelled")

    engine.on_batch = cancel
    outcome = chunk(store, engine, job_id, list(range(8)), batch_size=4)
    assert outcome.stopped and outcome.written == 0
    assert engine.batches == [4]
    assert store.redis.hlen(keys.results(job_id)) == 0


@pytest.mark.parametrize("status", ["cancelled", "succeeded"])
def test_a_chunk_of_an_ended_job_is_skipped(store: Store, status: str) -> None:
    job_id = make_job(store, [jpeg()])
    store.redis.hset(keys.job(job_id), "status", status)
    engine = FakeEngine()
    assert chunk(store, engine, job_id, [0]).skipped
    assert engine.batches == []


def test_a_chunk_of_an_expired_job_is_skipped(store: Store) -> None:
    assert chunk(store, FakeEngine(), "gone", [0, 1]).skipped


def chunk_metrics() -> dict[str, float]:
    return {
        "batches": counted("catdog_worker_batch_size_count", queue="bulk"),
        "images": counted("catdog_worker_batch_size_sum", queue="bulk"),
        "predicted": counted("catdog_worker_images_total", queue="bulk", outcome="predicted"),
        "empty": counted("catdog_worker_item_failures_total", reason="empty"),
        "waits": counted("catdog_worker_queue_wait_seconds_count", queue="bulk"),
        "dogs": counted(
            "catdog_worker_predictions_total",
            label="dog",
            model_name=FAKE_MODEL.name,
            model_version=FAKE_MODEL.version,
        ),
    }


def test_a_chunk_counts_its_batches_predictions_failures_and_queue_wait(store: Store) -> None:
    job_id = make_job(store, [jpeg()] * 5 + [b""])
    before = chunk_metrics()
    run_chunk(
        store,
        FakeEngine(),
        job_id,
        0,
        list(range(6)),
        batch_size=4,
        max_deliveries=3,
        limits=LIMITS,
        enqueued_at=time.time() - 2,
    )
    after = chunk_metrics()
    delta = {k: after[k] - before[k] for k in before}
    # Batches [4, 2]: item 5 never reached the model.
    assert delta == {"batches": 2, "images": 5, "predicted": 5, "empty": 1, "waits": 6, "dogs": 5}


def test_a_chunk_records_its_predictions_for_feedback(store: Store) -> None:
    job_id = make_job(store, [jpeg(), b""])
    config = QualityConfig(window=10, record_ttl_s=60)
    run_chunk(
        store,
        FakeEngine(),
        job_id,
        0,
        [0, 1],
        batch_size=4,
        max_deliveries=3,
        limits=LIMITS,
        quality=config,
    )
    assert store.redis.hget(q.Keys.record(f"job:{job_id}:0"), "label") == b"dog"
    assert not store.redis.exists(q.Keys.record(f"job:{job_id}:1"))  # failed: nothing to score
    assert store.redis.lrange(q.Keys.predictions(FAKE_MODEL), 0, -1) == [b"dog 0.800000"]


def test_the_soft_time_limit_fails_the_items_in_hand_and_leaves_the_rest_for_a_retry(
    store: Store,
) -> None:
    job_id = make_job(store, [jpeg()] * 6)
    engine = FakeEngine()

    def time_is_up() -> None:
        if len(engine.batches) == 2:  # Celery raises this in the task when its limit passes
            raise SoftTimeLimitExceeded()

    engine.on_batch = time_is_up
    outcome = chunk(store, engine, job_id, list(range(6)), batch_size=2)

    assert outcome.timed_out and not outcome.finished
    found = results(store, job_id)
    assert sorted(found) == [0, 1, 2, 3]  # 4 and 5 wait for the retry
    assert [found[i].error.reason for i in (2, 3) if found[i].error] == ["timeout", "timeout"]
    assert all(label_of(found[i]) == "dog" for i in (0, 1))
    assert store(jobs.status(job_id)) is JobStatus.RUNNING


def test_a_chunk_names_its_holder_while_it_runs(store: Store) -> None:
    job_id = make_job(store, [jpeg()] * 2)
    engine = FakeEngine()
    seen: list[dict[bytes, bytes]] = []
    engine.on_batch = lambda: seen.append(store.redis.hgetall(keys.holders(job_id)))
    run_chunk(
        store,
        engine,
        job_id,
        3,
        [0, 1],
        batch_size=4,
        max_deliveries=3,
        limits=LIMITS,
        holder="w@h:42",
    )
    assert seen == [{b"3": b"w@h:42"}]
    assert store(jobs.release_chunk(job_id, 3, "w@h:other")) is False  # not its to release
    assert store(jobs.release_chunk(job_id, 3, "w@h:42")) is True
