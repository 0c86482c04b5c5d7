"""The /predict task body with a fake engine against a real Redis: the answer reaches the
mailbox, a bad image or a missing model answers an error, an abandoned request is skipped."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from common import quality
from common.errors import ModelNotAvailableError
from common.store import keys
from common.store.ops import Store
from common.wire import PredictReply
from tests.integration.processes import wait_until
from tests.unit.worker.fakes import (
    FAKE_MODEL,
    LIMITS,
    FakeEngine,
    PreparingFakeEngine,
    counted,
    jpeg,
)
from worker.batcher import BatchedEngine
from worker.forward import CountedEngine
from worker.realtime import serve_prediction


def test_serve_prediction_answers_with_the_label_model_and_version(store: Store) -> None:
    store.redis.set(keys.predict_image("p"), jpeg())
    reply = serve_prediction(store, FakeEngine, "p", LIMITS)
    assert reply is not None and reply.prediction is not None
    assert (reply.prediction.label, reply.prediction.model) == ("dog", FAKE_MODEL)
    raw = store.redis.lpop(keys.predict_reply("p"))
    assert isinstance(raw, bytes) and PredictReply.from_json(raw) == reply


def test_the_answer_is_recorded_for_its_callers_feedback_with_the_reply(store: Store) -> None:
    """POST /feedback finds a /predict answer by its id as soon as the caller has it, and
    only for the key that asked: the worker stores the record in the reply's transaction."""
    store.redis.set(keys.predict_image("fb"), jpeg())
    serve_prediction(store, FakeEngine, "fb", LIMITS, owner="key-1")
    record = store.redis.hgetall(quality.Keys.record(quality.prediction_key(prediction_id="fb")))
    assert record[b"label"] == b"dog" and record[b"owner"] == b"key-1"
    assert record[b"model_version"] == FAKE_MODEL.version.encode()
    window = store.redis.lrange(quality.Keys.predictions(FAKE_MODEL), 0, -1)
    assert len(window) == 1 and window[0].startswith(b"dog ")

    store.redis.set(keys.predict_image("fb-bad"), b"not an image")
    serve_prediction(store, FakeEngine, "fb-bad", LIMITS, owner="key-1")
    assert not store.redis.exists(
        quality.Keys.record(quality.prediction_key(prediction_id="fb-bad"))
    )


def test_serve_prediction_answers_an_error_for_a_bad_image_or_a_missing_model(
    store: Store,
) -> None:
    store.redis.set(keys.predict_image("bad"), b"not an image")
    reply = serve_prediction(store, FakeEngine, "bad", LIMITS)
    assert reply is not None and reply.prediction is None
    assert reply.error is not None and reply.error.reason == "not_an_image"

    def no_model() -> FakeEngine:
        raise ModelNotAvailableError("no checkpoint")

    store.redis.set(keys.predict_image("nomodel"), jpeg())
    reply = serve_prediction(store, no_model, "nomodel", LIMITS)
    assert reply is not None and reply.error is not None
    assert reply.error.reason == "model_not_available"


def test_serve_prediction_skips_an_abandoned_request(store: Store) -> None:
    assert serve_prediction(store, FakeEngine, "timed-out", LIMITS) is None
    assert not store.redis.exists(keys.predict_reply("timed-out"))


def test_concurrent_predictions_share_a_counted_forward_pass(store: Store) -> None:
    """Predictions that arrive while a pass runs are answered together by the next one, and
    the batch-size histogram and the batcher's wait count real passes, not requests."""
    gate, running = threading.Event(), threading.Event()
    fake = FakeEngine(on_batch=lambda: (running.set(), gate.wait(5)))
    engine = BatchedEngine(fake, max_batch_size=8, max_wait_ms=0, queue="realtime")
    before = counted("catdog_worker_batch_size_count", queue="realtime")
    waits_before = counted("catdog_worker_batch_wait_seconds_count", queue="realtime")
    pids = [f"batched-{n}" for n in range(5)]
    for pid in pids:
        store.redis.set(keys.predict_image(pid), jpeg())
    with ThreadPoolExecutor(len(pids)) as pool:
        first = pool.submit(serve_prediction, store, lambda: engine, pids[0], LIMITS)
        assert running.wait(5)  # the first pass is running and held
        rest = [pool.submit(serve_prediction, store, lambda: engine, p, LIMITS) for p in pids[1:]]
        wait_until(lambda: engine.batcher.waiting() == 4, 5, "four queued predictions")
        gate.set()
        replies = [f.result(10) for f in (first, *rest)]
    engine.close()
    assert all(r is not None and r.prediction is not None for r in replies)
    assert fake.batches == [1, 4]
    assert counted("catdog_worker_batch_size_count", queue="realtime") == before + 2
    assert counted("catdog_worker_batch_wait_seconds_count", queue="realtime") == waits_before + 2


def test_a_gpu_workers_callers_prepare_their_own_photos_and_share_the_pass(store: Store) -> None:
    """With `prepare_in_callers` each task thread preprocesses its photo; the batcher's thread
    only runs passes, which still gather the photos that arrived while one ran."""
    gate, running = threading.Event(), threading.Event()
    fake = PreparingFakeEngine(on_batch=lambda: (running.set(), gate.wait(5)))
    engine = BatchedEngine(fake, 8, 0, "realtime", prepare_in_callers=True)
    pids = [f"gpu-{n}" for n in range(4)]
    for pid in pids:
        store.redis.set(keys.predict_image(pid), jpeg())
    with ThreadPoolExecutor(len(pids), thread_name_prefix="task") as pool:
        first = pool.submit(serve_prediction, store, lambda: engine, pids[0], LIMITS)
        assert running.wait(5)
        rest = [pool.submit(serve_prediction, store, lambda: engine, p, LIMITS) for p in pids[1:]]
        wait_until(lambda: engine.batcher.waiting() == 3, 5, "three queued predictions")
        gate.set()
        replies = [f.result(10) for f in (first, *rest)]
    engine.close()
    assert all(r is not None and r.prediction is not None for r in replies)
    assert fake.batches == [1, 3]
    assert len(fake.prepared_in) == 4 and all(n.startswith("task") for n in fake.prepared_in)
    assert fake.passes_in == ["micro-batcher", "micro-batcher"]


def test_a_prediction_past_its_deadline_fails_with_timeout_and_frees_its_thread(
    store: Store,
) -> None:
    """The soft limit: the task thread stops waiting for a held pass, and its photo, still
    queued, is never run."""
    gate, running = threading.Event(), threading.Event()
    fake = FakeEngine(on_batch=lambda: (running.set(), gate.wait(5)))
    engine = BatchedEngine(fake, max_batch_size=8, max_wait_ms=0, queue="realtime")
    for pid in ("held", "late"):
        store.redis.set(keys.predict_image(pid), jpeg())
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(serve_prediction, store, lambda: engine, "held", LIMITS)
        assert running.wait(5)
        started = time.monotonic()
        reply = serve_prediction(store, lambda: engine, "late", LIMITS, deadline=time.time() + 0.3)
        assert time.monotonic() - started < 2
        gate.set()
        assert held.result(5) is not None
    engine.close()
    assert reply is not None and reply.error is not None and reply.error.reason == "timeout"
    assert fake.batches == [1]  # the late photo never reached a pass


def test_a_prediction_whose_deadline_passed_before_it_ran_is_not_classified(
    store: Store,
) -> None:
    fake = FakeEngine()
    store.redis.set(keys.predict_image("stale"), jpeg())
    reply = serve_prediction(store, lambda: fake, "stale", LIMITS, deadline=time.time() - 1)
    assert reply is not None and reply.error is not None and reply.error.reason == "timeout"
    assert fake.batches == []


def test_a_process_without_batching_counts_each_prediction_as_a_pass_of_one(
    store: Store,
) -> None:
    engine = CountedEngine(FakeEngine(), "realtime")
    before = counted("catdog_worker_batch_size_count", queue="realtime")
    store.redis.set(keys.predict_image("timed"), jpeg())
    serve_prediction(store, lambda: engine, "timed", LIMITS, enqueued_at=time.time())
    assert counted("catdog_worker_batch_size_count", queue="realtime") == before + 1


def test_a_batched_engine_is_handed_out_warm_and_a_failed_warm_up_is_raised() -> None:
    """The engine is returned only once its warm-up has run on the batcher's thread (the one
    that runs every pass); a warm-up that fails fails the model's load."""
    warmed_in: list[str] = []

    def warm_up() -> None:
        warmed_in.append(threading.current_thread().name)

    engine = BatchedEngine(FakeEngine(), 4, 0, "realtime", warm_up=warm_up)
    assert warmed_in == ["micro-batcher"]
    engine.close()

    def broken() -> None:
        raise RuntimeError("CUDA error: an illegal memory access")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        BatchedEngine(FakeEngine(), 4, 0, "realtime", warm_up=broken)
