"""Workers dying and models changing under a running service.

A dedicated stack with a short visibility timeout (8 s), so a chunk held by a killed worker
comes back quickly; chunks of 10 items run in batches of 2, so a kill lands mid-chunk. (On a
loaded machine a chunk can outlive the short timeout and be delivered a third time while it
runs: the results must still hold every item exactly once.)
"""

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from common.ml.checkpoint import load_checkpoint, save_checkpoint
from common.store import keys, workers
from common.store.ops import Store
from tests.integration.processes import (
    Stack,
    all_items,
    start_gateway,
    start_stack,
    wait_for_job,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SETTINGS = {
    "visibility_timeout_s": 8,
    "chunk_size": 10,
    "batch_size": 2,
    "heartbeat_interval_s": 0.5,
    "worker_threads": 1,  # one process per worker here: two threads would fight the suite
    "idempotency_pending_ttl_s": 3,
}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Path:
    """A private copy: the reload tests rewrite it."""
    path = tmp_path_factory.mktemp("resilience-model") / "model.pt"
    shutil.copy(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def lone_stack(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path_factory.mktemp("resilience-stack"), str(model_path), workers=0, **SETTINGS
    )
    yield stack
    stack.stop()


def test_worker_killed_mid_job_leaves_the_job_complete_with_every_item_once(
    lone_stack: Stack, photo_dir: Path
) -> None:
    worker_a = lone_stack.add_worker("a", concurrency=1)
    photos = sorted((photo_dir / "kaggle").glob("*.jpg"))
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    with lone_stack.client() as client:
        job_id = client.post("/jobs", files=files).json()["job_id"]

        def mid_chunk() -> int | None:
            done = int(client.get(f"/jobs/{job_id}", params={"limit": 1}).json()["done"])
            return done if done >= 10 and done % 10 != 0 else None  # a chunk half written

        done_at_kill = wait_until(mid_chunk, 60, "a chunk half done", every_s=0.005)
        worker_a.kill(signal.SIGKILL)
        worker_a.popen.wait(10)
        assert done_at_kill < 200

        lone_stack.add_worker("b", concurrency=1)
        final = wait_for_job(client, job_id, timeout_s=90)
        items = all_items(client, job_id)

    assert final["status"] == "succeeded"
    assert (final["done"], final["failed"], final["pending"]) == (200, 0, 0)
    assert sorted(item["index"] for item in items) == list(range(200))
    assert all(item["status"] == "succeeded" for item in items)
    redis = lone_stack.redis
    assert redis.hlen(keys.results(job_id)) == 200
    deliveries = {int(v) for v in redis.hvals(keys.deliveries(job_id))}
    assert max(deliveries) >= 2, "the killed worker's chunk was delivered again"
    assert len(redis.hvals(keys.attempts(job_id))) == 200


def _run(module: str, stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )


def _predicted_version(stack: Stack, photo: Path) -> str:
    with stack.client() as client:
        response = client.post("/predict", files={"file": (photo.name, photo.read_bytes())})
    assert response.status_code == 200, response.text
    return str(response.json()["model"]["version"])


def test_reload_moves_workers_to_the_new_model_and_a_failed_load_keeps_the_old(
    lone_stack: Stack, model_path: Path, photo_dir: Path
) -> None:
    if not any(p.alive() and p.name in ("a", "b") for p in lone_stack.processes):
        lone_stack.add_worker("b", concurrency=1)
    photo = sorted((photo_dir / "kaggle").glob("*.jpg"))[0]
    assert _predicted_version(lone_stack, photo) == "1"

    model, config, _ = load_checkpoint(model_path)
    save_checkpoint(model_path, model, config, {"model_name": "catdog", "model_version": "v2"})
    reloaded = _run("worker.reload", lone_stack, "--timeout", "30")
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    assert "now v2" in reloaded.stdout
    assert _predicted_version(lone_stack, photo) == "v2"

    torch.save({"not": "a checkpoint"}, model_path)
    failed = _run("worker.reload", lone_stack, "--timeout", "30")
    assert failed.returncode == 1
    assert "kept v2" in failed.stdout
    assert _predicted_version(lone_stack, photo) == "v2"
    with lone_stack.client() as client:
        assert client.get("/readyz").status_code == 200


def test_healthcheck_pings_this_worker_by_name(lone_stack: Stack) -> None:
    store = Store.from_url(lone_stack.redis_url)
    node = next(hb.hostname for hb in store(workers.live()) if hb.ready)
    healthy = _run("worker.healthcheck", lone_stack, "--hostname", node, "--require-model")
    assert healthy.returncode == 0, healthy.stderr
    started = time.monotonic()
    missing = _run(
        "worker.healthcheck", lone_stack, "--hostname", "nobody@nowhere", "--timeout", "1"
    )
    assert missing.returncode == 1
    assert time.monotonic() - started < 15


def _start_upload(url: str, idempotency_key: str) -> socket.socket:
    """A job upload that announces 5 MB and sends a first slice of it, then stalls."""
    host, port = url.removeprefix("http://").split(":")
    boundary = "catdog-boundary"
    head = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="files"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + b"\xff\xd8"
        + b"x" * 2000
    )
    request = (
        "POST /jobs HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {5 * 1024 * 1024}\r\n"
        f"Idempotency-Key: {idempotency_key}\r\n\r\n"
    ).encode()
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(request + head)
    return sock


def test_a_gateway_killed_mid_upload_frees_its_idempotency_key_within_the_pending_ttl(
    lone_stack: Stack, photo_dir: Path
) -> None:
    if not any(p.alive() and p.name in ("a", "b") for p in lone_stack.processes):
        lone_stack.add_worker("b", concurrency=1)
    doomed, doomed_url = start_gateway(lone_stack.env, lone_stack.log_dir)
    key = "shelter-upload-monday"
    reservation = keys.idempotency("", key)  # the anonymous caller: auth is off here
    sock = _start_upload(doomed_url, key)
    try:
        wait_until(lambda: lone_stack.redis.exists(reservation), 10, "the key to be reserved")
        doomed.kill(signal.SIGKILL)
        doomed.popen.wait(10)
        killed_at = time.monotonic()
    finally:
        sock.close()
    photo = sorted((photo_dir / "kaggle").glob("*.jpg"))[0]
    files = [("files", (photo.name, photo.read_bytes(), "image/jpeg"))]
    with lone_stack.client() as client:
        # While the reservation stands, the key belongs to the dead upload.
        first = client.post("/jobs", files=files, headers={"Idempotency-Key": key})
        if time.monotonic() - killed_at < SETTINGS["idempotency_pending_ttl_s"] - 0.5:
            assert first.status_code == 409, first.text

        def retried() -> httpx.Response | None:
            response = client.post("/jobs", files=files, headers={"Idempotency-Key": key})
            return response if response.status_code == 202 else None

        accepted = wait_until(retried, 15, "the retry with the same key to be accepted", 0.5)
        lapsed_after_s = time.monotonic() - killed_at
        job_id = accepted.json()["job_id"]
        assert wait_for_job(client, job_id)["status"] == "succeeded"
        # Now the key is bound to the job for the job's lifetime: a replay, not a new job.
        again = client.post("/jobs", files=files, headers={"Idempotency-Key": key})
    assert lapsed_after_s < SETTINGS["idempotency_pending_ttl_s"] + 5
    assert again.status_code == 202 and again.json()["job_id"] == job_id
    assert again.headers["idempotent-replayed"] == "true"
    assert lone_stack.redis.ttl(reservation) > 60  # the job's lifetime, not the pending TTL
