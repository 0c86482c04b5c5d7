"""The job store on the unit suite's own redis-server (tests/unit/conftest.py)."""

from collections.abc import Iterator

import pytest

from common.jobstore import JobStore


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    job_store = JobStore.from_url(redis_url)
    yield job_store
    job_store.redis.close()
