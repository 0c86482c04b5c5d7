"""One Redis exchange, written once for both clients.

The gateway talks to Redis with redis.asyncio, the workers with the blocking client. Their
commands, pipelines and scripts have the same names and arguments; only the reply differs (a
value, or an awaitable of it). So each exchange is an `Op`: `send` issues the commands on
whichever client it is given, `parse` turns the raw reply into a typed value. `Store` and
`AsyncStore` are the two faces that run ops, and the store's modules define ops only: no
hand-written sync and async twins.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio as aioredis

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def _same(reply: Any) -> Any:
    return reply


@dataclass(frozen=True)
class Op(Generic[T_co]):
    send: Callable[[Any], Any]  # (client) -> reply, or an awaitable of it
    parse: Callable[[Any], T_co] = _same


def script(source: str) -> Callable[[Any, Sequence[Any], Sequence[Any]], Any]:
    """A Lua script as a callable `(client, keys, args)`; EVALSHA, loading it on first use."""

    def call(client: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return client.register_script(source)(keys=list(keys), args=list(args))

    return call


def text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Store:
    """The blocking face (workers, command-line tools)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    @classmethod
    def from_url(cls, url: str) -> "Store":
        return cls(redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30))

    def __call__(self, op: Op[T]) -> T:
        return op.parse(op.send(self.redis))


class AsyncStore:
    """The asyncio face (the gateway)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def __call__(self, op: Op[T]) -> T:
        return op.parse(await op.send(self.redis))
