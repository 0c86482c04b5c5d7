"""The /predict hand-off: the gateway stores the upload under a prediction id and queues a
task naming it, in one transaction, then blocks (BLPOP, off the event loop) on the reply list
the worker pushes its one `PredictReply` to. A worker skips a prediction whose image is gone:
the gateway gave up.
"""

from typing import Any

from common.quality import PredictionRecord, QualityConfig, buffer_records
from common.store import keys
from common.store.ops import Op
from common.wire import PredictReply

# How long an unread reply is kept (the gateway that waited for it has gone).
REPLY_TTL_S = 60


def post(pid: str, data: bytes, ttl_s: int, queue: str, message: bytes) -> Op[Any]:
    """Store the upload and push its task `message` (common.messaging.predict_message) onto
    the broker's `queue` list, in one transaction: no worker can take the task before its
    image is there, and a failed store queues nothing."""

    def send(client: Any) -> Any:
        pipe = client.pipeline()
        pipe.set(keys.predict_image(pid), data, ex=ttl_s)
        pipe.lpush(queue, message)
        return pipe.execute()

    return Op(send)


def take_image(pid: str) -> Op[bytes | None]:
    return Op(
        lambda client: client.get(keys.predict_image(pid)),
        lambda value: value if isinstance(value, bytes) else None,
    )


def reply(
    pid: str,
    answer: PredictReply,
    record: PredictionRecord | None = None,
    quality: QualityConfig | None = None,
) -> Op[Any]:
    """Push the answer and delete the image, in one transaction that also stores `record`,
    the answer's live-quality record (common.quality): feedback can name the prediction as
    soon as its caller has the answer, and recording it costs no round trip of its own."""

    def send(client: Any) -> Any:
        pipe = client.pipeline()
        pipe.rpush(keys.predict_reply(pid), answer.to_json())
        pipe.expire(keys.predict_reply(pid), REPLY_TTL_S)
        pipe.unlink(keys.predict_image(pid))
        if record is not None:
            config = quality or QualityConfig()
            buffer_records(pipe, [record], config.record_ttl_s, config.window)
        return pipe.execute()

    return Op(send)


def await_reply(pid: str, timeout_s: float) -> Op[PredictReply | None]:
    """The worker's answer, or None after `timeout_s`."""
    return Op(
        lambda client: client.blpop([keys.predict_reply(pid)], timeout=timeout_s),
        lambda popped: PredictReply.from_json(popped[1]) if popped else None,
    )


def abandon(pid: str) -> Op[Any]:
    return Op(lambda client: client.unlink(keys.predict_image(pid), keys.predict_reply(pid)))
