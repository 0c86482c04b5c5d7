"""Every store test runs twice, once through each face: the ops are written once, so each
must behave the same on the blocking client (workers) and the asyncio one (gateway)."""

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from common.store.ops import AsyncStore, Op, Store

Run = Callable[[Op[Any]], Any]


@pytest.fixture(params=["blocking", "asyncio"])
def run(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Run]:
    if request.param == "blocking":
        store = Store.from_url(redis_url)
        yield store
        store.redis.close()
        return
    loop = asyncio.new_event_loop()
    client = aioredis.Redis.from_url(redis_url)
    async_store = AsyncStore(client)
    yield lambda op: loop.run_until_complete(async_store(op))
    loop.run_until_complete(client.aclose())
    loop.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client, to look at what the ops left in Redis."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
