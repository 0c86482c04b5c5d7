"""How much work waits in the broker's queues (kombu keeps each as a Redis list)."""

from common.store.ops import Op


def depth(queue: str) -> Op[int]:
    return Op(lambda client: client.llen(queue), int)
