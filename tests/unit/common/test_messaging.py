"""The /predict task the gateway pushes itself (`predict_message`) is the message Celery's own
`send_task` would publish: the realtime workers are plain Celery workers, so any drift (a
Celery or Kombu upgrade that changes the envelope) must fail here, not in production."""

import json
from typing import Any

import redis

from common.messaging import PREDICT_TASK, make_celery, predict_message
from common.settings import Settings

# Made per message from the clock or a fresh uuid: present in both, equal in neither.
VARYING = {("headers", "expires"), ("properties", "delivery_tag")}


def _comparable(raw: bytes) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(raw)
    for part, field in VARYING:
        assert envelope[part].pop(field)
    return envelope


def test_the_gateways_predict_message_is_the_one_send_task_publishes(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, realtime_queue="messaging-test")
    celery = make_celery(settings, "messaging-test")
    client = redis.Redis.from_url(redis_url)
    try:
        celery.send_task(
            PREDICT_TASK,
            args=["p1", "r1"],
            kwargs={"enqueued_at": 12.5, "owner": "key-1"},
            queue=settings.realtime_queue,
            task_id="p1",
            expires=settings.predict_timeout_s,
            ignore_result=True,
        )
        published = client.lpop(settings.realtime_queue)
        assert isinstance(published, bytes)
        ours = predict_message(celery, settings, "p1", "r1", "key-1", enqueued_at=12.5)
        assert _comparable(ours) == _comparable(published)
    finally:
        celery.close()
        client.close()
