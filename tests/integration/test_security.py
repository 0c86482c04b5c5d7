"""API keys, ownership, per-key limits and callback targets against a real stack with auth
on: real redis-server, a Celery worker and uvicorn. Keys are made with the `catdog keys`
command, as an operator would."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.processes import Stack, start_stack, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

RATE = {"rps": 1.0, "burst": 2}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("secure-stack"),
        str(checkpoint),
        workers=1,
        auth="on",
        callback_allowed_hosts=[],  # every inside address is refused, as in production
        max_active_jobs_per_key=20,
    )
    yield running
    running.stop()


def catdog_keys(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CATDOG_REDIS_URL": stack.redis_url}
    return subprocess.run(
        [sys.executable, "-m", "client", "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def new_key(stack: Stack, name: str, *options: str) -> tuple[str, str]:
    """(secret, key id) of a key made with `catdog keys create`."""
    made = catdog_keys(stack, "create", "--name", name, *options)
    key_id = made.stderr.split("created key ", 1)[1].split()[0]
    return made.stdout.strip(), key_id


def as_key(stack: Stack, secret: str) -> httpx.Client:
    return httpx.Client(base_url=stack.url, timeout=30, headers={"X-API-Key": secret})


def photo(photo_dir: Path, name: str = "cat.1.jpg") -> tuple[str, bytes]:
    return name, (photo_dir / "kaggle" / name).read_bytes()


def test_no_key_unknown_revoked_or_expired_is_401_while_probes_stay_open(
    secure: Stack, photo_dir: Path
) -> None:
    secret, key_id = new_key(secure, "shelter-a")
    expired, _ = new_key(secure, "shelter-old", "--expires-in-days", "0.000001")
    time.sleep(0.2)
    with httpx.Client(base_url=secure.url, timeout=30) as anonymous:
        refused = anonymous.post("/predict", files={"file": photo(photo_dir)})
        assert refused.status_code == 401 and refused.json()["reason"] == "missing_api_key"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.get("/jobs/abc").status_code == 401
        assert (
            anonymous.post(
                "/feedback", json={"job_id": "a", "index": 0, "label": "cat"}
            ).status_code
            == 401
        )
        assert anonymous.get("/livez").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        bearer = {"Authorization": f"Bearer {secret}"}
        assert (
            anonymous.post("/predict", files={"file": photo(photo_dir)}, headers=bearer).status_code
            == 200
        )
        wrong = anonymous.post(
            "/predict", files={"file": photo(photo_dir)}, headers={"X-API-Key": "cdk_nope"}
        )
        assert wrong.status_code == 401 and wrong.json()["reason"] == "invalid_api_key"
    with as_key(secure, expired) as old:
        answer = old.get("/jobs/abc")
        assert answer.status_code == 401 and "expired" in answer.json()["detail"]
    catdog_keys(secure, "revoke", key_id)
    with as_key(secure, secret) as revoked:
        answer = revoked.get("/jobs/abc")
        assert answer.status_code == 401 and "revoked" in answer.json()["detail"]
    listed = catdog_keys(secure, "list").stdout
    assert key_id in listed and '"state": "revoked"' in listed and secret not in listed


def test_another_keys_job_is_404_for_every_verb(secure: Stack, photo_dir: Path) -> None:
    secret_a, _ = new_key(secure, "shelter-a")
    secret_b, _ = new_key(secure, "shelter-b")
    with as_key(secure, secret_a) as a, as_key(secure, secret_b) as b:
        accepted = a.post("/jobs", files=[("files", photo(photo_dir))])
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        wait_for_job(a, job_id)
        assert b.get(f"/jobs/{job_id}").status_code == 404
        assert (
            b.get(f"/jobs/{job_id}", params={"offset": 0, "limit": 1}).json()["reason"]
            == "job_not_found"
        )
        assert b.delete(f"/jobs/{job_id}").status_code == 404
        stolen = b.post("/feedback", json={"job_id": job_id, "index": 0, "label": "dog"})
        assert stolen.status_code == 404
        answer = a.post("/predict", files={"file": photo(photo_dir)}).json()
        other = b.post("/feedback", json={"prediction_id": answer["prediction_id"], "label": "dog"})
        assert other.status_code == 404
        assert a.get(f"/jobs/{job_id}").status_code == 200
        own = a.post("/feedback", json={"job_id": job_id, "index": 0, "label": "cat"})
        assert own.status_code == 200, own.text


def test_the_same_idempotency_key_under_two_api_keys_makes_two_jobs(
    secure: Stack, photo_dir: Path
) -> None:
    secret_a, _ = new_key(secure, "shelter-a")
    secret_b, _ = new_key(secure, "shelter-b")
    headers = {"Idempotency-Key": "monday-upload"}
    with as_key(secure, secret_a) as a, as_key(secure, secret_b) as b:
        first = a.post("/jobs", files=[("files", photo(photo_dir))], headers=headers).json()
        second = b.post("/jobs", files=[("files", photo(photo_dir))], headers=headers).json()
        again = a.post("/jobs", files=[("files", photo(photo_dir))], headers=headers).json()
    assert first["job_id"] != second["job_id"]
    assert again["job_id"] == first["job_id"]


def test_a_key_over_its_rate_gets_429_with_retry_after_and_is_served_after_it(
    secure: Stack,
) -> None:
    secret, _ = new_key(secure, "busy-shelter", "--rps", "1", "--burst", "2")
    with as_key(secure, secret) as client:
        answers = [client.get("/jobs/nothing-here") for _ in range(3)]
        assert [r.status_code for r in answers] == [404, 404, 429]
        assert answers[2].json()["reason"] == "rate_limited"
        wait = int(answers[2].headers["retry-after"])
        assert 1 <= wait <= 2
        time.sleep(wait)
        assert client.get("/jobs/nothing-here").status_code == 404


def test_a_key_over_its_byte_budget_is_refused_before_its_upload_is_stored(
    secure: Stack, photo_dir: Path
) -> None:
    secret, _ = new_key(secure, "small-shelter", "--max-bytes", "50000")
    files = [("files", photo(photo_dir, f"cat.{i}.jpg")) for i in range(10)]  # ~250 KB
    stored_before = set(secure.redis.scan_iter(match="catdog:job*"))
    with as_key(secure, secret) as client:
        refused = client.post("/jobs", files=files)
        assert refused.status_code == 429, refused.text
        assert refused.json()["reason"] == "byte_budget_exceeded"
        assert int(refused.headers["retry-after"]) >= 1
        assert set(secure.redis.scan_iter(match="catdog:job*")) == stored_before
        small = client.post("/jobs", files=files[:1])
        assert small.status_code == 202, small.text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://[::1]:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        f"http://{__import__('socket').gethostname()}:9/hook",  # a name that resolves to loopback
        "http://mlflow:5000/api/2.0/mlflow/experiments/list",
    ],
)
def test_a_callback_into_the_deployment_is_refused_at_submit(
    secure: Stack, photo_dir: Path, url: str
) -> None:
    secret, _ = new_key(secure, "shelter-cb")
    with as_key(secure, secret) as client:
        refused = client.post(
            "/jobs", files=[("files", photo(photo_dir))], data={"callback_url": url}
        )
    assert refused.status_code == 422, refused.text
    assert refused.json()["reason"] == "callback_url_refused"


def test_no_log_line_redis_key_or_metric_holds_a_secret(secure: Stack, photo_dir: Path) -> None:
    secret, _ = new_key(secure, "shelter-quiet")
    with as_key(secure, secret) as client:
        assert client.post("/predict", files={"file": photo(photo_dir)}).status_code == 200
        job = client.post("/jobs", files=[("files", photo(photo_dir))]).json()
        wait_for_job(client, job["job_id"])
        metrics = client.get("/metrics").text
    needle = secret.encode()
    for name in secure.redis.scan_iter(match="*"):
        assert needle not in name
        kind = secure.redis.type(name)
        if kind == b"string":
            assert needle not in (secure.redis.get(name) or b"")
        elif kind == b"hash":
            assert all(needle not in k + v for k, v in secure.redis.hgetall(name).items())
    assert secret not in metrics
    assert secret not in secure.gateway_log() and secret not in secure.worker_logs()
