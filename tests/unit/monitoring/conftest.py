"""A real redis-server (its own, on a free port) for the live-quality and /metrics tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.processes import start_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_redis(Path(tmp_path_factory.mktemp("redis-monitoring")))
    yield url
    proc.stop()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    yield redis_server
    redis.Redis.from_url(redis_server).flushdb()
