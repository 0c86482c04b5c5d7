"""The store on the unit suite's own redis-server (tests/unit/conftest.py)."""

from collections.abc import Iterator

import pytest

from common.store.ops import Store


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    blocking = Store.from_url(redis_url)
    yield blocking
    blocking.redis.close()
