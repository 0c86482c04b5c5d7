"""Fixtures for the unit tests of every package."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.processes import start_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server of the suite's own, on a free port (never the machine's 6379)."""
    proc, url = start_redis(Path(tmp_path_factory.mktemp("redis")))
    yield url
    proc.stop()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The shared server, emptied after each test."""
    yield redis_server
    redis.Redis.from_url(redis_server).flushdb()
