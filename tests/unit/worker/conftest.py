"""A real redis-server (its own, on a free port) for the job-store and chunk tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.jobstore import JobStore
from tests.integration.processes import start_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_redis(Path(tmp_path_factory.mktemp("redis")))
    yield url
    proc.stop()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    yield redis_server
    redis.Redis.from_url(redis_server).flushdb()


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    job_store = JobStore.from_url(redis_url)
    yield job_store
    job_store.redis.close()
