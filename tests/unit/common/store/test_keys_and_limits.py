"""API keys, ownership and per-key limits against a real Redis, through both faces: a key
is stored as a digest, found only by its secret, refused once revoked or expired, and
rate-limited by a token bucket; a job is invisible to other keys; a key's jobs and bytes are
bounded."""

import time

import redis

from common.errors import JobExpiredError, JobNotFoundError
from common.store import api_keys, idempotency, jobs, keys, limits
from common.store.api_keys import ApiKey
from common.store.jobs import NewJob
from common.store.limits import Limits
from tests.unit.common.store.conftest import Run

LIMITS = Limits(rate_per_s=2.0, burst=3, active_jobs=2, stored_bytes=1000)


def make_key(run: Run, name: str = "shelter", **extra: object) -> tuple[str, ApiKey]:
    secret = api_keys.new_secret()
    key = ApiKey.issue(name, secret, **extra)  # type: ignore[arg-type]
    run(api_keys.save(key))
    return secret, key


def test_a_key_is_stored_as_a_digest_and_found_only_by_its_secret(
    run: Run, raw: redis.Redis
) -> None:
    secret, key = make_key(run, rate_limit_rps=5.0)
    stored = b"".join(k + v for k, v in raw.hgetall(keys.api_key(key.digest)).items())
    assert secret.encode() not in stored and secret[4:].encode() not in stored
    assert not any(secret.encode() in name for name in raw.keys("*"))
    found = run(api_keys.admit(secret, 10.0, 10))
    assert found.key == key and found.wait_s == 0
    assert run(api_keys.admit(secret + "x", 10.0, 10)).key is None
    assert run(api_keys.admit("cdk_" + "A" * 43, 10.0, 10)).key is None


def test_a_revoked_or_expired_key_is_refused_and_still_listed(run: Run) -> None:
    _, live = make_key(run, "live")
    make_key(run, "old", expires_at=time.time() - 1)
    _, gone = make_key(run, "gone")
    assert run(api_keys.revoke(gone.key_id)) and not run(api_keys.revoke("nope"))
    listed = {k.name: k for k in run(api_keys.every())}
    now = time.time()
    assert listed["live"].refusal(now) is None
    assert "expired" in (listed["old"].refusal(now) or "")
    assert "revoked" in (listed["gone"].refusal(now) or "")
    assert [k.name for k in run(api_keys.every())] == ["live", "old", "gone"]
    assert live.key_id == live.digest[: api_keys.ID_LENGTH]


def test_the_request_bucket_allows_a_burst_then_refills_at_the_rate(run: Run) -> None:
    secret, _ = make_key(run, rate_limit_rps=2.0, rate_limit_burst=3)
    waits = [run(api_keys.admit(secret, 100.0, 100)).wait_s for _ in range(4)]
    assert waits[:3] == [0, 0, 0] and 0 < waits[3] <= 0.5  # the key's own limits, not 100
    time.sleep(0.55)
    assert run(api_keys.admit(secret, 100.0, 100)).wait_s == 0


def new_job(run: Run, owner: str, ttl_s: int = 60) -> str:
    job_id = f"job{time.time_ns()}"
    job = NewJob(job_id, ["a.jpg"], [], chunks=1, callback_url=None, request_id=None, owner=owner)
    run(jobs.create(job, ttl_s, tombstone_ttl_s=60))
    return job_id


def test_another_keys_job_is_not_found_for_any_verb(run: Run) -> None:
    job_id = new_job(run, "key-a")
    assert run(jobs.read(job_id, "key-a")).owner == "key-a"
    for op in (
        jobs.read(job_id, "key-b"),
        jobs.page(job_id, 0, 1, "key-b"),
        jobs.cancel(job_id, "key-b"),
    ):
        try:
            run(op)
        except JobNotFoundError:
            continue
        raise AssertionError("another key saw the job")
    assert run(jobs.read(job_id, "key-a")).status.value == "queued"  # its cancel did nothing


def test_only_its_owner_learns_that_an_expired_job_existed(run: Run) -> None:
    job_id = new_job(run, "key-a", ttl_s=1)
    time.sleep(1.2)
    try:
        run(jobs.read(job_id, "key-b"))
        raise AssertionError("expected not found")
    except JobNotFoundError:
        pass
    try:
        run(jobs.read(job_id, "key-a"))
        raise AssertionError("expected expired")
    except JobExpiredError:
        pass


def test_idempotency_keys_are_scoped_by_api_key(run: Run) -> None:
    assert run(idempotency.reserve("key-a", "upload-1", "job-a", ttl_s=60))
    assert run(idempotency.reserve("key-b", "upload-1", "job-b", ttl_s=60))
    assert run(idempotency.lookup("key-a", "upload-1")) == "job-a"
    assert run(idempotency.lookup("key-b", "upload-1")) == "job-b"


def test_a_key_holds_at_most_its_jobs_and_bytes_and_an_ended_job_frees_its_place(run: Run) -> None:
    first, second = new_job(run, "k"), new_job(run, "k")
    assert run(limits.reserve_job("k", first, 400, LIMITS)).ok
    assert run(limits.reserve_job("k", second, 500, LIMITS)).ok
    third = run(limits.reserve_job("k", "job-3", 10, LIMITS))
    assert third.verdict == "too_many_jobs"
    run(jobs.cancel(first, "k"))  # ended: its place and bytes are free again
    over = run(limits.reserve_job("k", "job-4", 600, LIMITS))
    assert (over.verdict, over.held_bytes) == ("byte_budget", 500)
    assert run(limits.reserve_job("k", "job-5", 500, LIMITS)).ok
    run(limits.release_job("k", "job-5"))
    run(limits.settle_bytes("k", second, 100))
    assert run(limits.reserve_job("k", "job-6", 900, LIMITS)).ok
