"""Chunks and predictions with a fake engine against a real Redis: redelivery skips what is
done, a poison item fails after max_deliveries, a failing batch isolates its bad item, and a
cancel stops the chunk; every batch, prediction and failure is counted, and written job
items are recorded for feedback."""

import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from PIL import Image
from prometheus_client import REGISTRY

from common import quality as q
from common.errors import ModelNotAvailableError
from common.imaging import ImageLimits
from common.jobstore import ItemResult, JobStatus, JobStore, Keys
from common.quality import QualityConfig
from worker.engine import Prediction
from worker.inference import ChunkOutcome, run_chunk, serve_prediction

LIMITS = ImageLimits()


def jpeg(color: tuple[int, int, int] = (10, 200, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), color).save(buffer, "JPEG")
    return buffer.getvalue()


RED = (250, 0, 0)


def red_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), RED).save(buffer, "PNG")  # lossless: the colour stays exact
    return buffer.getvalue()


@dataclass
class FakeEngine:
    """Says `dog`; records every batch; can fail on a batch holding a red image."""

    fail_on_red: bool = False
    batches: list[int] = field(default_factory=list)
    on_batch: Callable[[], None] | None = None

    @property
    def name(self) -> str:
        return "catdog"

    @property
    def version(self) -> str:
        return "fake-1"

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        self.batches.append(len(images))
        if self.on_batch:
            self.on_batch()
        if self.fail_on_red and any(img.getpixel((0, 0)) == RED for img in images):
            raise RuntimeError("kernel crashed")
        return [Prediction("dog", 0.8, {"cat": 0.2, "dog": 0.8}) for _ in images]


def make_job(store: JobStore, images: list[bytes], job_id: str = "job1") -> str:
    store.redis.hset(
        Keys.job(job_id),
        mapping={"status": "queued", "total": len(images), "created_at": "1.0"},
    )
    store.redis.expire(Keys.job(job_id), 60)
    for i, data in enumerate(images):
        store.redis.set(Keys.image(job_id, i), data)
    return job_id


def chunk(
    store: JobStore, engine: FakeEngine, job_id: str, indices: list[int], **kw: int
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


def results(store: JobStore, job_id: str) -> dict[int, ItemResult]:
    raw = store.redis.hgetall(Keys.results(job_id))
    return {int(k): ItemResult.from_json(int(k), v) for k, v in raw.items()}


def test_a_chunk_runs_batched_and_records_every_item(store: JobStore) -> None:
    job_id = make_job(store, [jpeg()] * 6 + [b""])
    engine = FakeEngine()
    outcome = chunk(store, engine, job_id, list(range(7)))
    assert outcome.finished and outcome.written == 7
    assert engine.batches == [4, 2]  # item 6 failed to decode, never reached the model
    found = results(store, job_id)
    assert found[6].error is not None and found[6].error.reason == "empty"
    assert found[0].label == "dog" and found[0].model_version == "fake-1"
    assert store.status(job_id) is JobStatus.SUCCEEDED
    assert not store.redis.exists(*[Keys.image(job_id, i) for i in range(7)])  # freed


def test_a_redelivered_chunk_skips_done_items_and_runs_the_rest_one_by_one(
    store: JobStore,
) -> None:
    job_id = make_job(store, [jpeg()] * 5)
    store.start_chunk(job_id, 0)  # the first delivery, whose worker died...
    store.complete(job_id, [ItemResult(0, "cat", 0.6, {"cat": 0.6, "dog": 0.4}, "catdog", "0")])
    engine = FakeEngine()
    outcome = chunk(store, engine, job_id, list(range(5)))
    assert outcome.written == 4 and outcome.finished
    assert engine.batches == [1, 1, 1, 1]
    assert results(store, job_id)[0].label == "cat"  # not overwritten
    record = store.job(job_id)
    assert record is not None and (record.done, record.failed) == (5, 0)


def test_a_poison_item_ends_failed_after_max_deliveries_without_running(
    store: JobStore,
) -> None:
    job_id = make_job(store, [jpeg()] * 3)
    # Item 1 killed its worker three times already (its attempts were counted each time).
    store.redis.hset(Keys.attempts(job_id), "1", 3)
    engine = FakeEngine()
    chunk(store, engine, job_id, [0, 1, 2], max_deliveries=3)
    found = results(store, job_id)
    assert found[1].error is not None and found[1].error.reason == "max_deliveries"
    assert found[0].ok and found[2].ok
    assert engine.batches == [2]


def test_a_failing_batch_is_retried_item_by_item_so_only_the_bad_item_fails(
    store: JobStore,
) -> None:
    job_id = make_job(store, [jpeg(), red_png(), jpeg()])
    engine = FakeEngine(fail_on_red=True)
    chunk(store, engine, job_id, [0, 1, 2])
    found = results(store, job_id)
    assert found[1].error is not None and found[1].error.reason == "inference_failed"
    assert found[0].ok and found[2].ok
    assert engine.batches == [3, 1, 1, 1]


def test_a_cancel_during_a_chunk_stops_it_and_later_items_never_finish(
    store: JobStore,
) -> None:
    job_id = make_job(store, [jpeg()] * 8)
    engine = FakeEngine()
    # The cancel lands while the first batch is in the model.

    def cancel() -> None:
        store.redis.hset(Keys.job(job_id), "status", "cancelled")

    engine.on_batch = cancel
    outcome = chunk(store, engine, job_id, list(range(8)), batch_size=4)
    assert outcome.stopped and outcome.written == 0
    assert engine.batches == [4]
    assert store.redis.hlen(Keys.results(job_id)) == 0


@pytest.mark.parametrize("status", ["cancelled", "succeeded"])
def test_a_chunk_of_an_ended_job_is_skipped(store: JobStore, status: str) -> None:
    job_id = make_job(store, [jpeg()])
    store.redis.hset(Keys.job(job_id), "status", status)
    engine = FakeEngine()
    assert chunk(store, engine, job_id, [0]).skipped
    assert engine.batches == []


def test_a_chunk_of_an_expired_job_is_skipped(store: JobStore) -> None:
    assert chunk(store, FakeEngine(), "gone", [0, 1]).skipped


def test_serve_prediction_answers_with_the_label_model_and_version(store: JobStore) -> None:
    store.redis.set(Keys.predict_image("p"), jpeg())
    reply = serve_prediction(store, FakeEngine, "p", LIMITS)
    assert reply is not None and reply["ok"]
    assert (reply["label"], reply["model"]) == ("dog", {"name": "catdog", "version": "fake-1"})
    raw = store.redis.lpop(Keys.predict_reply("p"))
    assert isinstance(raw, bytes) and json.loads(raw)["label"] == "dog"


def test_serve_prediction_answers_an_error_for_a_bad_image_or_a_missing_model(
    store: JobStore,
) -> None:
    store.redis.set(Keys.predict_image("bad"), b"not an image")
    reply = serve_prediction(store, FakeEngine, "bad", LIMITS)
    assert reply is not None and not reply["ok"]
    assert reply["error"]["reason"] == "not_an_image"

    def no_model() -> FakeEngine:
        raise ModelNotAvailableError("no checkpoint")

    store.redis.set(Keys.predict_image("nomodel"), jpeg())
    reply = serve_prediction(store, no_model, "nomodel", LIMITS)
    assert reply is not None and reply["error"]["reason"] == "model_not_available"


def test_serve_prediction_skips_an_abandoned_request(store: JobStore) -> None:
    assert serve_prediction(store, FakeEngine, "timed-out", LIMITS) is None
    assert not store.redis.exists(Keys.predict_reply("timed-out"))


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_chunk_counts_its_batches_predictions_failures_and_queue_wait(store: JobStore) -> None:
    job_id = make_job(store, [jpeg()] * 5 + [b""])
    before = {
        "batches": counted("catdog_worker_batch_size_count", queue="bulk"),
        "images": counted("catdog_worker_batch_size_sum", queue="bulk"),
        "predicted": counted("catdog_worker_images_total", queue="bulk", outcome="predicted"),
        "empty": counted("catdog_worker_item_failures_total", reason="empty"),
        "waits": counted("catdog_worker_queue_wait_seconds_count", queue="bulk"),
        "dogs": counted(
            "catdog_worker_predictions_total",
            label="dog",
            model_name="catdog",
            model_version="fake-1",
        ),
    }
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
    after = {
        "batches": counted("catdog_worker_batch_size_count", queue="bulk"),
        "images": counted("catdog_worker_batch_size_sum", queue="bulk"),
        "predicted": counted("catdog_worker_images_total", queue="bulk", outcome="predicted"),
        "empty": counted("catdog_worker_item_failures_total", reason="empty"),
        "waits": counted("catdog_worker_queue_wait_seconds_count", queue="bulk"),
        "dogs": counted(
            "catdog_worker_predictions_total",
            label="dog",
            model_name="catdog",
            model_version="fake-1",
        ),
    }
    delta = {k: after[k] - before[k] for k in before}
    # Batches [4, 2]: item 5 never reached the model.
    assert delta == {"batches": 2, "images": 5, "predicted": 5, "empty": 1, "waits": 6, "dogs": 5}


def test_a_chunk_records_its_predictions_for_feedback(store: JobStore) -> None:
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
    assert store.redis.lrange(q.Keys.predictions(q.ModelRef("catdog", "fake-1")), 0, -1) == [
        b"dog 0.800000"
    ]


def test_serve_prediction_counts_one_batch_of_one(store: JobStore) -> None:
    before = counted("catdog_worker_batch_size_count", queue="realtime")
    store.redis.set(Keys.predict_image("timed"), jpeg())
    serve_prediction(store, FakeEngine, "timed", LIMITS, enqueued_at=time.time())
    assert counted("catdog_worker_batch_size_count", queue="realtime") == before + 1
