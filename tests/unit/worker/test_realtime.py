"""The /predict task body with a fake engine against a real Redis: the answer reaches the
mailbox, a bad image or a missing model answers an error, an abandoned request is skipped."""

import time

from common.errors import ModelNotAvailableError
from common.store import keys
from common.store.ops import Store
from common.wire import PredictReply
from tests.unit.worker.fakes import FAKE_MODEL, LIMITS, FakeEngine, counted, jpeg
from worker.realtime import serve_prediction


def test_serve_prediction_answers_with_the_label_model_and_version(store: Store) -> None:
    store.redis.set(keys.predict_image("p"), jpeg())
    reply = serve_prediction(store, FakeEngine, "p", LIMITS)
    assert reply is not None and reply.prediction is not None
    assert (reply.prediction.label, reply.prediction.model) == ("dog", FAKE_MODEL)
    raw = store.redis.lpop(keys.predict_reply("p"))
    assert isinstance(raw, bytes) and PredictReply.from_json(raw) == reply


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


def test_serve_prediction_counts_one_batch_of_one(store: Store) -> None:
    before = counted("catdog_worker_batch_size_count", queue="realtime")
    store.redis.set(keys.predict_image("timed"), jpeg())
    serve_prediction(store, FakeEngine, "timed", LIMITS, enqueued_at=time.time())
    assert counted("catdog_worker_batch_size_count", queue="realtime") == before + 1
