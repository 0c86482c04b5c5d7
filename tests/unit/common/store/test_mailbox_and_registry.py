"""The /predict mailbox, the worker registry, reload generations and
idempotency reservations, against a real Redis through both faces."""

import time

import redis

from common.store import idempotency, keys, model_generation, predict_mailbox, workers
from common.wire import Heartbeat, ItemError, ModelRef, PredictReply
from tests.unit.common.store.conftest import Run


def test_a_prediction_reply_reaches_the_waiting_gateway(run: Run, raw: redis.Redis) -> None:
    run(predict_mailbox.post("p1", b"bytes", ttl_s=10, queue="mailbox-q", message=b"task"))
    assert raw.lrange("mailbox-q", 0, -1) == [b"task"]  # queued with its upload
    assert run(predict_mailbox.take_image("p1")) == b"bytes"
    answer = PredictReply(error=ItemError(reason="truncated", message="cut short"))
    run(predict_mailbox.reply("p1", answer))
    assert run(predict_mailbox.await_reply("p1", timeout_s=1)) == answer
    assert run(predict_mailbox.take_image("p1")) is None  # the reply deleted the upload
    assert run(predict_mailbox.await_reply("p2", timeout_s=0.2)) is None


def test_an_abandoned_prediction_leaves_nothing_behind(run: Run, raw: redis.Redis) -> None:
    run(predict_mailbox.post("p3", b"bytes", ttl_s=10, queue="mailbox-q", message=b"task"))
    run(predict_mailbox.abandon("p3"))
    assert not raw.exists(keys.predict_image("p3"), keys.predict_reply("p3"))


def beat(worker_id: str, queues: list[str], state: str = "ready") -> Heartbeat:
    model = ModelRef("catdog", "3") if state == "ready" else None
    return Heartbeat(
        worker_id=worker_id, hostname="w@h", pid=1, queues=queues, state=state, model=model
    )


def test_heartbeats_live_for_their_ttl(run: Run, raw: redis.Redis) -> None:
    run(workers.beat(beat("w@h:1", ["realtime"]), ttl_s=0.5))
    live = run(workers.live())
    assert [(hb.worker_id, hb.model) for hb in live] == [("w@h:1", ModelRef("catdog", "3"))]
    time.sleep(0.7)
    assert run(workers.live()) == []
    run(workers.beat(beat("w@h:1", ["realtime"]), ttl_s=5))
    run(workers.forget("w@h:1"))
    assert run(workers.live()) == []
    assert raw.zcard(keys.WORKERS) == 0


def test_a_reload_generation_only_goes_up(run: Run) -> None:
    assert run(model_generation.current()) == 0
    assert run(model_generation.bump()) == 1
    assert run(model_generation.current()) == 1


def test_an_idempotency_key_is_reserved_once_and_released_only_by_its_job(run: Run) -> None:
    assert run(idempotency.reserve("", "k", "job-1", ttl_s=60))
    assert not run(idempotency.reserve("", "k", "job-2", ttl_s=60))
    run(idempotency.release("", "k", "job-2"))  # not its reservation: no effect
    assert run(idempotency.lookup("", "k")) == "job-1"
    run(idempotency.release("", "k", "job-1"))
    assert run(idempotency.lookup("", "k")) is None


def test_a_pending_reservation_is_bound_for_the_jobs_lifetime_only_by_its_job(
    run: Run, raw: redis.Redis
) -> None:
    assert run(idempotency.reserve("", "upload", "job-1", ttl_s=5))
    assert not run(idempotency.commit("", "upload", "job-2", ttl_s=3600))  # not its job
    assert raw.ttl(keys.idempotency("", "upload")) <= 5
    assert run(idempotency.commit("", "upload", "job-1", ttl_s=3600))
    assert raw.ttl(keys.idempotency("", "upload")) > 3000
    assert not run(idempotency.commit("", "lapsed", "job-1", ttl_s=3600))  # nothing to bind
