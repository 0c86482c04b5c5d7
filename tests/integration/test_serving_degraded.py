"""The gateway when things are missing: no worker (503), a full queue (429 + Retry-After),
a worker that never answers (504), Redis down (503), and expired jobs (410).

A dedicated stack: Redis and a gateway with short timeouts and TTLs, and no worker at all.
"""

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from common.settings import Settings
from common.store import keys, workers
from common.store.ops import Store
from common.wire import Heartbeat, ModelRef
from tests.integration.processes import (
    Process,
    free_port,
    service_env,
    start_gateway,
    start_redis,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

JOB_TTL_S = 2


@pytest.fixture(scope="module")
def degraded(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path
) -> Iterator[tuple[str, str]]:
    logs = tmp_path_factory.mktemp("degraded-stack")
    processes: list[Process] = []
    try:
        redis_proc, redis_url = start_redis(logs)
        processes.append(redis_proc)
        env = service_env(
            redis_url,
            str(checkpoint),
            job_ttl_s=JOB_TTL_S,
            max_queue_depth=3,
            predict_timeout_s=1,
        )
        gateway, url = start_gateway(env, logs)
        processes.append(gateway)
        yield url, redis_url
    finally:
        for proc in reversed(processes):
            proc.stop()


@pytest.fixture
def http(degraded: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=degraded[0], timeout=30) as client:
        yield client


@pytest.fixture
def store(degraded: tuple[str, str]) -> Iterator[Store]:
    job_store = Store.from_url(degraded[1])
    yield job_store
    job_store.redis.flushdb()


def announce(store: Store, worker_id: str, **state: Any) -> Heartbeat:
    """Write a heartbeat for a worker process that does not exist."""
    host = worker_id.split(":")[0]
    heartbeat = Heartbeat(
        worker_id=worker_id, hostname=host, pid=1, queues=["realtime", "bulk"], **state
    )
    store(workers.beat(heartbeat, ttl_s=60))
    return heartbeat


@pytest.fixture
def fake_worker(store: Store) -> Heartbeat:
    """A heartbeat of a ready worker that consumes nothing: the gateway believes in it."""
    return announce(store, "ghost@test:1", state="ready", model=ModelRef("catdog", "ghost"))


@pytest.fixture(scope="module")
def jpeg(photo_dir: Path) -> bytes:
    return sorted((photo_dir / "kaggle").glob("*.jpg"))[0].read_bytes()


def test_readyz_is_503_with_the_reason_when_no_worker_runs(
    http: httpx.Client, store: Store
) -> None:
    response = http.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert "realtime" in body["detail"] and "bulk" in body["detail"]
    assert http.get("/livez").status_code == 200


def test_readyz_names_a_worker_whose_model_failed_to_load(http: httpx.Client, store: Store) -> None:
    announce(store, "w@x:2", state="failed", error="no checkpoint")
    body = http.get("/readyz").json()
    assert "w@x:2 failed (no checkpoint)" in body["detail"]


def test_predict_is_503_when_no_worker_serves_the_queue(
    http: httpx.Client, store: Store, jpeg: bytes
) -> None:
    response = http.post("/predict", files={"file": ("a.jpg", jpeg)})
    assert response.status_code == 503
    assert response.json()["reason"] == "no_worker"


def test_predict_is_504_when_no_worker_answers_in_time(
    http: httpx.Client, store: Store, fake_worker: Heartbeat, jpeg: bytes
) -> None:
    started = time.monotonic()
    response = http.post("/predict", files={"file": ("a.jpg", jpeg)})
    assert response.status_code == 504
    assert response.json()["reason"] == "timeout"
    assert "1 s" in response.json()["detail"]
    assert time.monotonic() - started < 5
    # The abandoned image is deleted, so a late worker skips the task.
    assert not list(store.redis.scan_iter(match=keys.predict_image("*")))


def test_predict_and_jobs_are_429_with_retry_after_when_the_queue_is_full(
    http: httpx.Client, store: Store, fake_worker: Heartbeat, jpeg: bytes
) -> None:
    store.redis.rpush("realtime", *[b"{}"] * 3)
    store.redis.rpush("bulk", *[b"{}"] * 3)
    response = http.post("/predict", files={"file": ("a.jpg", jpeg)})
    assert response.status_code == 429
    assert response.json()["reason"] == "queue_full"
    assert int(response.headers["retry-after"]) > 0
    response = http.post("/jobs", files={"files": ("a.jpg", jpeg)})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0


def test_a_job_is_accepted_without_workers_and_cancelled_while_queued(
    http: httpx.Client, store: Store, jpeg: bytes
) -> None:
    response = http.post("/jobs", files=[("files", ("a.jpg", jpeg)), ("files", ("b.jpg", jpeg))])
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    cancelled = http.delete(f"/jobs/{job_id}").json()
    assert (cancelled["status"], cancelled["done"], cancelled["pending"]) == ("cancelled", 0, 2)


def test_results_expire_after_the_ttl_then_the_job_is_410_and_unknown_ids_404(
    http: httpx.Client, store: Store, jpeg: bytes
) -> None:
    job_id = http.post("/jobs", files={"files": ("a.jpg", jpeg)}).json()["job_id"]
    assert http.get(f"/jobs/{job_id}").status_code == 200
    time.sleep(JOB_TTL_S + 0.5)
    response = http.get(f"/jobs/{job_id}")
    assert response.status_code == 410
    assert response.json()["reason"] == "job_expired"
    assert http.delete(f"/jobs/{job_id}").status_code == 410
    assert not store.redis.exists(keys.image(job_id, 0), keys.names(job_id))
    assert http.get("/jobs/feedfacecafe").status_code == 404


def test_the_gateway_answers_503_when_redis_is_down(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, jpeg: bytes
) -> None:
    env = service_env(f"redis://127.0.0.1:{free_port()}/0", str(checkpoint))
    gateway, url = start_gateway(env, tmp_path_factory.mktemp("no-redis"))
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/livez").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "Redis" in ready.json()["detail"]
            response = client.post("/predict", files={"file": ("a.jpg", jpeg)})
            assert response.status_code == 503
            assert response.json()["reason"] == "broker_unavailable"
            response = client.post("/jobs", files={"files": ("a.jpg", jpeg)})
            assert response.status_code == 503
            assert client.get("/jobs/abc").status_code == 503
    finally:
        gateway.stop()


def test_an_upload_that_would_not_fit_in_redis_is_507_before_a_byte_is_stored(
    http: httpx.Client, store: Store, fake_worker: Heartbeat, jpeg: bytes
) -> None:
    # Redis with maxmemory, as in compose: room for some photos, not sixty (client buffers
    # take some of it). Uploads keep `redis_memory_reserve` of it free for the workers.
    used = int(store.redis.info("memory")["used_memory"])
    store.redis.config_set("maxmemory-policy", "noeviction")
    store.redis.config_set("maxmemory", int((used + 30 * len(jpeg)) / 0.9))
    try:
        files = [("files", (f"{i}.jpg", jpeg)) for i in range(60)]
        refused_job = http.post("/jobs", files=files)
        refused_photo = http.post("/predict", files={"file": ("a.jpg", jpeg * 60)})
        small_job = http.post("/jobs", files=files[:2])
    finally:
        store.redis.config_set("maxmemory", 0)
    for response in (refused_job, refused_photo):
        assert response.status_code == 507, response.text
        assert response.json()["reason"] == "insufficient_storage"
        assert "more bytes of uploads" in response.json()["detail"]
        assert int(response.headers["retry-after"]) > 0
    assert small_job.status_code == 202, small_job.text
    # Nothing of the refused uploads was stored.
    stored = {k.decode() for k in store.redis.scan_iter(match=keys.image("*", "*"))}
    assert stored <= {keys.image(small_job.json()["job_id"], i) for i in range(2)}
    assert not list(store.redis.scan_iter(match=keys.predict_image("*")))
    # With room again, the same upload goes through (a passed reading is reused for 1 s).
    wait_until(lambda: http.post("/jobs", files=files).status_code == 202, 5, "room again")


def test_a_redis_already_at_maxmemory_refuses_uploads_without_a_server_error(
    http: httpx.Client, store: Store, fake_worker: Heartbeat, jpeg: bytes
) -> None:
    store.redis.config_set("maxmemory-policy", "noeviction")
    store.redis.config_set("maxmemory", 1)  # filled by something else
    try:
        job = http.post("/jobs", files=[("files", ("a.jpg", jpeg))])
        photo = http.post("/predict", files={"file": ("a.jpg", jpeg)})
    finally:
        store.redis.config_set("maxmemory", 0)
    # Refused on the gateway's memory reading (507), or, inside the second a passed reading
    # is reused, by Redis itself (503): never a server error, never a half-stored upload.
    expected = {507: "insufficient_storage", 503: "storage_full"}
    for response in (job, photo):
        assert expected.get(response.status_code) == response.json()["reason"], response.text
    assert not list(store.redis.scan_iter(match=keys.image("*", "*")))


def test_predict_waits_out_the_default_timeout_for_a_silent_worker_then_answers_504(
    degraded: tuple[str, str],
    store: Store,
    fake_worker: Heartbeat,
    jpeg: bytes,
    checkpoint: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A gateway with the production timeout: the wait must not be cut short by a client
    # socket timeout (a 503 after 5 s), and nothing of the photo may stay behind.
    default_s = float(Settings.model_fields["predict_timeout_s"].default)
    env = service_env(degraded[1], str(checkpoint))
    assert "CATDOG_PREDICT_TIMEOUT_S" not in env
    gateway, url = start_gateway(env, tmp_path_factory.mktemp("default-timeout"))
    try:
        started = time.monotonic()
        response = httpx.post(f"{url}/predict", files={"file": ("a.jpg", jpeg)}, timeout=60)
        waited_s = time.monotonic() - started
    finally:
        gateway.stop()
    assert response.status_code == 504, response.text
    assert response.json()["reason"] == "timeout"
    assert f"{default_s:g} s" in response.json()["detail"]
    assert default_s - 0.5 <= waited_s < default_s + 3
    assert not list(store.redis.scan_iter(match=keys.predict_image("*")))


def test_a_hung_or_stopped_redis_is_503_within_a_second_and_the_gateway_recovers(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, jpeg: bytes
) -> None:
    logs = tmp_path_factory.mktemp("hung-redis")
    redis_proc, redis_url = start_redis(logs)
    port = urlparse(redis_url).port
    env = service_env(redis_url, str(checkpoint))  # the default redis_timeout_s
    timeout_s = float(Settings.model_fields["redis_timeout_s"].default)
    gateway, url = start_gateway(env, logs)
    ghost = {"state": "ready", "model": ModelRef("catdog", "ghost")}
    photo = {"file": ("a.jpg", jpeg, "image/jpeg")}
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            announce(Store.from_url(redis_url), "ghost@test:1", **ghost)
            job_id = client.post("/jobs", files={"files": ("a.jpg", jpeg)}).json()["job_id"]
            for fault in ("hung", "down"):
                if fault == "hung":
                    redis_proc.kill(signal.SIGSTOP)
                else:
                    redis_proc.stop()
                calls = {
                    "predict": lambda: client.post("/predict", files=photo),
                    "jobs": lambda: client.post("/jobs", files={"files": ("a.jpg", jpeg)}),
                    "status": lambda: client.get(f"/jobs/{job_id}"),
                    "readyz": lambda: client.get("/readyz"),
                }
                for name, call in calls.items():
                    started = time.monotonic()
                    response = call()
                    waited_s = time.monotonic() - started
                    assert response.status_code == 503, (fault, name, response.text)
                    if name != "readyz":
                        assert response.json()["reason"] == "broker_unavailable", response.text
                    assert waited_s < timeout_s + 1, (fault, name, waited_s)
                assert client.get("/livez").status_code == 200
                if fault == "hung":
                    redis_proc.kill(signal.SIGCONT)
                else:  # back on its port, empty (no persistence here)
                    redis_proc, _ = start_redis(logs, port=port)
                    announce(Store.from_url(redis_url), "ghost@test:1", **ghost)
                wait_until(lambda: client.get("/readyz").status_code == 200, 10, "recovery")
                accepted = client.post("/jobs", files={"files": ("a.jpg", jpeg)})
                assert accepted.status_code == 202, (fault, accepted.text)
    finally:
        gateway.stop()
        redis_proc.kill(signal.SIGCONT)
        redis_proc.stop()
