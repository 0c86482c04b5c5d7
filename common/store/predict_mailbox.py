"""The /predict hand-off: the gateway stores the upload under a prediction id, publishes a
task naming it, and blocks (BLPOP, off the event loop) on the reply list the worker pushes its
one `PredictReply` to. A worker skips a prediction whose image is gone: the gateway gave up.
"""

from typing import Any

from common.store import keys
from common.store.ops import Op
from common.wire import PredictReply

# How long an unread reply is kept (the gateway that waited for it has gone).
REPLY_TTL_S = 60


def put_image(pid: str, data: bytes, ttl_s: int) -> Op[Any]:
    return Op(lambda client: client.set(keys.predict_image(pid), data, ex=ttl_s))


def take_image(pid: str) -> Op[bytes | None]:
    return Op(
        lambda client: client.get(keys.predict_image(pid)),
        lambda value: value if isinstance(value, bytes) else None,
    )


def reply(pid: str, answer: PredictReply) -> Op[Any]:
    """Push the answer and delete the image, in one round trip."""

    def send(client: Any) -> Any:
        pipe = client.pipeline()
        pipe.rpush(keys.predict_reply(pid), answer.to_json())
        pipe.expire(keys.predict_reply(pid), REPLY_TTL_S)
        pipe.unlink(keys.predict_image(pid))
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
