"""The reload counter: `python -m worker.reload` bumps it, and every model-owning process
that sees a generation above its own loads the configured model again."""

from common.store import keys
from common.store.ops import Op


def current() -> Op[int]:
    return Op(lambda client: client.get(keys.MODEL_GENERATION), lambda value: int(value or 0))


def bump() -> Op[int]:
    return Op(lambda client: client.incr(keys.MODEL_GENERATION), int)
