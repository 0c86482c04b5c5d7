"""Workers dying, messages lost and models changing under a running service.

The stack runs with the production visibility timeout (an hour): a chunk held by a killed
worker comes back through the sweeper (worker.sweeper), not through kombu. Heartbeats and
sweeps are fast here (0.5 s) and a job counts as stalled after 3 s, so each recovery bound is
seconds; chunks of 10 items run in batches of 2, so a kill lands mid-chunk.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import torch
from PIL import Image

from common.messaging import make_celery, publish_chunk
from common.ml.checkpoint import load_checkpoint, save_checkpoint
from common.store import jobs, keys, workers
from common.store.jobs import NewJob
from common.store.ops import Store
from common.wire import Classification, ItemResult, ModelRef
from tests.images import encode
from tests.integration.callbacks import CallbackReceiver
from tests.integration.processes import (
    Process,
    Stack,
    all_items,
    start_gateway,
    start_redis,
    start_stack,
    wait_for_job,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# The bound: a job whose worker died completes within two minutes of the kill.
RECOVERY_BOUND_S = 120

SETTINGS = {
    "chunk_size": 10,
    "batch_size": 2,
    "heartbeat_interval_s": 0.5,
    "sweep_interval_s": 0.5,
    "stall_timeout_s": 3,
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
        tmp_path_factory.mktemp("resilience-stack"),
        str(model_path),
        workers=0,
        redis_appendonly=True,  # as in compose: the Redis restart test needs it
        **SETTINGS,
    )
    yield stack
    stack.stop()


def test_worker_killed_mid_job_leaves_the_job_complete_with_every_item_once(
    lone_stack: Stack, photo_dir: Path, receiver: Callable[[list[int]], CallbackReceiver]
) -> None:
    # Of the bulk queue alone, as deployed: it keeps a second chunk in its prefetch.
    worker_a = lone_stack.add_worker("a", concurrency=1, queues=lone_stack.settings().bulk_queue)
    photos = sorted((photo_dir / "kaggle").glob("*.jpg"))
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    hook = receiver([])
    with lone_stack.client() as client:
        accepted = client.post("/jobs", files=files, data={"callback_url": hook.url})
        job_id = accepted.json()["job_id"]

        def mid_chunk() -> int | None:
            done = int(client.get(f"/jobs/{job_id}", params={"limit": 1}).json()["done"])
            return done if done >= 10 and done % 10 != 0 else None  # a chunk half written

        done_at_kill = wait_until(mid_chunk, 60, "a chunk half done", every_s=0.005)
        worker_a.kill(signal.SIGKILL)
        worker_a.popen.wait(10)
        killed_at = time.monotonic()
        assert done_at_kill < 200

        # The survivor's sweeper never calls the job stalled: both of "a"'s chunks (the one
        # it ran and the one waiting in its prefetch) come back by the dead-holder rule.
        survivor = lone_stack.add_worker("b", concurrency=1, stall_timeout_s=3600)
        final = wait_for_job(client, job_id, timeout_s=RECOVERY_BOUND_S)
        recovered_after_s = time.monotonic() - killed_at
        items = all_items(client, job_id)
    wait_until(lambda: _settled(lone_stack, job_id), 30, "the job's end reported")
    survivor.stop()  # later tests need a sweeper with the module's stall timeout

    assert recovered_after_s < RECOVERY_BOUND_S
    assert len(hook.calls) == 1

    assert final["status"] == "succeeded"
    assert (final["done"], final["failed"], final["pending"]) == (200, 0, 0)
    assert sorted(item["index"] for item in items) == list(range(200))
    assert all(item["status"] == "succeeded" for item in items)
    redis = lone_stack.redis
    assert redis.hlen(keys.results(job_id)) == 200
    deliveries = {int(v) for v in redis.hvals(keys.deliveries(job_id))}
    assert max(deliveries) >= 2, "the killed worker's chunk was delivered again"
    assert len(redis.hvals(keys.attempts(job_id))) == 200
    logs = lone_stack.worker_logs()
    assert "chunks of a dead worker process queued again" in logs
    assert ':reserved"' in logs, "no chunk waited in the killed worker's prefetch"


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
    _a_worker(lone_stack)
    photo = sorted((photo_dir / "kaggle").glob("*.jpg"))[0]
    assert _predicted_version(lone_stack, photo) == "1"
    original = model_path.read_bytes()
    try:
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
    finally:  # workers started by later tests load a good model
        model_path.write_bytes(original)


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
    _a_worker(lone_stack)
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


WORKER_NAMES = ("a", "b", "c", "slow", "hung")


def _a_worker(stack: Stack) -> Process:
    """Any live worker of this module, or a new "b"."""
    running = [p for p in stack.processes if p.alive() and p.name in WORKER_NAMES]
    return running[0] if running else stack.add_worker("b", concurrency=1)


def _only_worker(stack: Stack, name: str, **settings: Any) -> Process:
    """A new worker `name` (with `settings`), after every other worker has stopped: the
    test's job can only go to it."""
    for proc in stack.processes:
        if proc.alive() and proc.name in WORKER_NAMES:
            proc.stop()
    return stack.add_worker(name, concurrency=1, **settings)


def _files(photos: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]


def _kaggle(photo_dir: Path, count: int) -> list[Path]:
    return sorted((photo_dir / "kaggle").glob("*.jpg"))[:count]


def _wait_for_done(client: httpx.Client, job_id: str, done: int) -> None:
    """Until at least `done` items of the job have a result (the job is under way)."""

    def reached() -> bool:
        return int(client.get(f"/jobs/{job_id}", params={"limit": 1}).json()["done"]) >= done

    wait_until(reached, 60, f"{done} items of the job done", every_s=0.01)


def _settled(stack: Stack, job_id: str) -> bool:
    """The job's end was fully reported: the sweeper no longer watches it, so no further
    report (and no second callback) can come from it."""
    return stack.redis.zscore(keys.WATCHED_JOBS, job_id) is None


def _assert_complete_once(client: httpx.Client, job_id: str, total: int) -> None:
    items = all_items(client, job_id)
    assert sorted(item["index"] for item in items) == list(range(total))
    assert all(item["status"] == "succeeded" for item in items), items


def test_a_pool_process_killed_mid_chunk_is_replaced_and_the_job_completes(
    lone_stack: Stack, photo_dir: Path, receiver: Callable[[list[int]], CallbackReceiver]
) -> None:
    worker = _only_worker(lone_stack, "c")
    store = Store.from_url(lone_stack.redis_url)
    child = next(hb.pid for hb in store(workers.live()) if hb.hostname.startswith("c@"))
    hook = receiver([])
    with lone_stack.client() as client:
        files, data = _files(_kaggle(photo_dir, 60)), {"callback_url": hook.url}
        job_id = client.post("/jobs", files=files, data=data).json()["job_id"]
        _wait_for_done(client, job_id, 5)
        os.kill(child, signal.SIGKILL)  # the pool process only; its worker lives on
        killed_at = time.monotonic()
        final = wait_for_job(client, job_id, timeout_s=RECOVERY_BOUND_S)
        assert time.monotonic() - killed_at < RECOVERY_BOUND_S
        assert (final["status"], final["done"], final["failed"]) == ("succeeded", 60, 0)
        _assert_complete_once(client, job_id, 60)
    wait_until(lambda: _settled(lone_stack, job_id), 30, "the job's end reported")
    assert len(hook.calls) == 1
    assert worker.alive()


def test_a_job_whose_chunk_messages_were_lost_is_driven_again_and_calls_back_once(
    lone_stack: Stack,
    photo_dir: Path,
    receiver: Callable[[list[int]], CallbackReceiver],
) -> None:
    node = _a_worker(lone_stack)
    hostname = next(
        hb.hostname
        for hb in Store.from_url(lone_stack.redis_url)(workers.live())
        if hb.hostname.startswith(f"{node.name}@")
    )
    celery = make_celery(lone_stack.settings(), "catdog-test-control")
    hook = receiver([])
    bulk = lone_stack.settings().bulk_queue
    try:
        # The worker stops consuming, so the job's messages wait in the queue; then they
        # are deleted, as a Redis crash inside its last second of writes would lose them.
        celery.control.cancel_consumer(bulk, destination=[hostname], reply=True, timeout=5)
        with lone_stack.client() as client:
            accepted = client.post(
                "/jobs", files=_files(_kaggle(photo_dir, 25)), data={"callback_url": hook.url}
            )
            job_id = accepted.json()["job_id"]
            assert lone_stack.redis.llen(bulk) == 3
            lone_stack.redis.delete(bulk)
            celery.control.add_consumer(bulk, destination=[hostname], reply=True, timeout=5)
            final = wait_for_job(client, job_id, timeout_s=60)
            assert (final["status"], final["done"]) == ("succeeded", 25)
            _assert_complete_once(client, job_id, 25)
            wait_until(lambda: _settled(lone_stack, job_id), 30, "the job's end reported")
    finally:
        celery.close()
    assert len(hook.calls) == 1
    assert "stalled job driven again" in node.log()


def test_a_job_whose_last_item_finished_without_its_end_report_still_calls_back_once(
    lone_stack: Stack, receiver: Callable[[list[int]], CallbackReceiver]
) -> None:
    _a_worker(lone_stack)
    hook = receiver([])
    store = Store.from_url(lone_stack.redis_url)
    job_id = uuid.uuid4().hex
    job = NewJob(job_id, ["a.jpg", "b.jpg"], [], 1, hook.url, None, plan=[[0, 1]])
    store(jobs.create(job, ttl_s=600, tombstone_ttl_s=60))
    found = Classification(
        label="cat",
        probability=0.9,
        probabilities={"cat": 0.9, "dog": 0.1},
        model=ModelRef("catdog", "1"),
    )
    # What a worker writes for the last items before it is killed, never queueing the report.
    results = [ItemResult(index=i, prediction=found) for i in (0, 1)]
    assert store(jobs.complete(job_id, results)).finished

    wait_until(lambda: hook.calls, 30, "the callback")
    wait_until(lambda: _settled(lone_stack, job_id), 30, "the job's end reported")
    assert len(hook.calls) == 1
    assert json.loads(hook.calls[0][1])["status"] == "succeeded"


def test_a_worker_stopped_by_a_full_redis_leaves_its_chunk_to_be_driven_again(
    lone_stack: Stack, photo_dir: Path
) -> None:
    # Redis at maxmemory refuses every command of a MULTI, so kombu cannot acknowledge a
    # message and Celery stops the worker. The gateway keeps Redis below that mark for its
    # uploads (test_serving_degraded.py); here something else filled it.
    worker = _only_worker(lone_stack, "b")
    redis = lone_stack.redis
    with lone_stack.client() as client:
        job_id = client.post("/jobs", files=_files(_kaggle(photo_dir, 40))).json()["job_id"]
        _wait_for_done(client, job_id, 4)
        redis.config_set("maxmemory", 1)  # noeviction: writes are refused from now on
        try:
            wait_until(lambda: not worker.alive(), 60, "the worker to stop on the full Redis")
        finally:
            redis.config_set("maxmemory", 0)
        assert "OutOfMemoryError" in worker.log()
        _a_worker(lone_stack)  # what the container's restart policy does
        final = wait_for_job(client, job_id, timeout_s=RECOVERY_BOUND_S)
        assert (final["status"], final["done"], final["failed"]) == ("succeeded", 40, 0)
        _assert_complete_once(client, job_id, 40)


def test_an_item_past_the_soft_time_limit_fails_with_timeout_and_the_job_goes_on(
    lone_stack: Stack, photo_dir: Path
) -> None:
    # One photo alone in each pass. The huge PNG takes 0.36 s to decode and resize on a quiet
    # machine (more under the suite's load), an ordinary photo a few ms; the limit sits
    # between, with room on both sides whatever runs the forward pass.
    slow_worker = _only_worker(
        lone_stack, "slow", task_soft_time_limit_s=0.15, task_time_limit_s=30, batch_size=1
    )
    slow = encode(Image.new("RGB", (7000, 7000), (120, 90, 60)), "PNG")
    files = [("files", ("huge.png", slow, "image/png")), *_files(_kaggle(photo_dir, 2))]
    with lone_stack.client() as client:
        job_id = client.post("/jobs", files=files).json()["job_id"]
        final = wait_for_job(client, job_id, timeout_s=60)
        items = all_items(client, job_id)
    assert (final["status"], final["done"], final["failed"]) == ("succeeded", 2, 1)
    assert items[0]["error"]["reason"] == "timeout", items[0]
    assert [item["status"] for item in items[1:]] == ["succeeded", "succeeded"]
    slow_worker.stop()  # later tests get a worker with the usual limits


def test_a_predict_past_the_hard_limit_ends_a_threaded_worker_as_celery_ends_a_child(
    lone_stack: Stack,
) -> None:
    # Celery enforces no time limit in a threads pool, and a thread cannot be killed: the
    # watchdog ends the process (exit 70) for its restart policy. The photo takes 0.36 s to
    # decode and resize on a quiet machine, more under load: past the 0.1 s hard limit.
    for proc in lone_stack.processes:
        if proc.alive() and proc.name in WORKER_NAMES:
            proc.stop()
    hung = lone_stack.add_worker(
        "hung",
        concurrency=2,
        pool="threads",
        queues=lone_stack.settings().realtime_queue,
        task_soft_time_limit_s=0.05,
        task_time_limit_s=0.1,
    )
    slow = encode(Image.new("RGB", (7000, 7000), (120, 90, 60)), "PNG")
    with lone_stack.client() as client, ThreadPoolExecutor(1) as pool:
        answer = pool.submit(client.post, "/predict", files={"file": ("huge.png", slow)})
        wait_until(lambda: not hung.alive(), 30, "the watchdog to end the worker")
        assert hung.popen.returncode == 70
        assert "hard time limit exceeded" in hung.log()
        assert answer.result(30).status_code in (503, 504)


def test_a_worker_without_a_model_takes_no_work_and_serves_once_its_model_appears(
    lone_stack: Stack, model_path: Path, photo_dir: Path, tmp_path: Path
) -> None:
    good = _a_worker(lone_stack)
    champion = tmp_path / "not-yet" / "model.pt"  # registered later in the test
    lone_stack.add_worker("nomodel", wait=False, model_uri=champion, model_load_retry_s=1)
    store = Store.from_url(lone_stack.redis_url)

    def failed() -> bool:
        return any(
            hb.hostname.startswith("nomodel@") and hb.state == "failed"
            for hb in store(workers.live())
        )

    wait_until(failed, 60, "the worker without a model to report its failed load")
    photos = _kaggle(photo_dir, 200)
    with lone_stack.client() as client:
        job_id = client.post("/jobs", files=_files(photos)).json()["job_id"]
        answers = [
            client.post("/predict", files={"file": (p.name, p.read_bytes(), "image/jpeg")})
            for p in photos[:50]
        ]
        final = wait_for_job(client, job_id, timeout_s=120)
        items = all_items(client, job_id)
    assert [a.status_code for a in answers] == [200] * 50, [a.text for a in answers if a.is_error]
    assert (final["done"], final["failed"]) == (200, 0)
    assert not [i for i in items if (i.get("error") or {}).get("reason") == "model_not_available"]
    nomodel = lone_stack.worker("nomodel")
    assert "Task catdog." not in nomodel.log()  # it received nothing

    champion.parent.mkdir()
    shutil.copy(model_path, champion)
    wait_until(
        lambda: "model ready: consuming" in nomodel.log(), 60, "the late worker to start serving"
    )
    good.stop()  # now only the late worker can answer
    photo = photos[0]
    with lone_stack.client() as client:

        def answered() -> httpx.Response | None:
            response = client.post("/predict", files={"file": (photo.name, photo.read_bytes())})
            return response if response.status_code == 200 else None

        late = wait_until(answered, 30, "an answer from the late worker", every_s=0.5)
    assert late.json()["label"] in ("cat", "dog")


def test_redis_killed_and_restarted_mid_job_loses_nothing_and_the_job_completes(
    lone_stack: Stack, photo_dir: Path
) -> None:
    _a_worker(lone_stack)
    redis_proc = lone_stack.processes[0]
    port = urlparse(lone_stack.redis_url).port
    with lone_stack.client() as client:
        # everysec holds writes back for up to 2 s while a slow fsync runs (a busy CI disk):
        # a job accepted within that window can be lost outright (README, Reliability). The
        # scenario is a crash mid-job, so the job's acceptance is made durable first.
        lone_stack.redis.config_set("appendfsync", "always")
        job_id = client.post("/jobs", files=_files(_kaggle(photo_dir, 60))).json()["job_id"]
        lone_stack.redis.config_set("appendfsync", "everysec")
        _wait_for_done(client, job_id, 10)
        # A crash, not a shutdown: what the job wrote since (results, holders, messages) may
        # be lost, which the sweeper and the per-index writes cover.
        redis_proc.kill(signal.SIGKILL)
        redis_proc.popen.wait(10)
        restarted, _ = start_redis(lone_stack.log_dir, port=port, appendonly=True)
        lone_stack.processes[0] = restarted
        final = wait_for_job(client, job_id, timeout_s=RECOVERY_BOUND_S)
        assert (final["status"], final["done"], final["failed"]) == ("succeeded", 60, 0)
        _assert_complete_once(client, job_id, 60)
        assert client.get("/readyz").status_code == 200


def test_a_chunk_task_that_raises_is_driven_again_from_the_plan_and_calls_back_once(
    lone_stack: Stack, photo_dir: Path, receiver: Callable[[list[int]], CallbackReceiver]
) -> None:
    _a_worker(lone_stack)
    hook = receiver([])
    store = Store.from_url(lone_stack.redis_url)
    photos = _kaggle(photo_dir, 6)
    job_id = uuid.uuid4().hex
    names = [p.name for p in photos]
    job = NewJob(job_id, names, [], 1, hook.url, None, plan=[list(range(6))])
    store(jobs.create(job, ttl_s=600, tombstone_ttl_s=60))
    for i, photo in enumerate(photos):
        store(jobs.store_image(job_id, i, photo.read_bytes(), 600))
    # Its only message is one no retry rule covers: the task raises (an item index that is
    # not a number fails validation) and the message is gone.
    celery = make_celery(lone_stack.settings(), "catdog-test-publisher")
    try:
        publish_chunk(celery, lone_stack.settings(), job_id, 0, ["x"], None, time.time())  # type: ignore[list-item]
    finally:
        celery.close()

    with lone_stack.client() as client:
        final = wait_for_job(client, job_id, timeout_s=60)
        assert (final["status"], final["done"], final["failed"]) == ("succeeded", 6, 0)
        _assert_complete_once(client, job_id, 6)
    wait_until(lambda: _settled(lone_stack, job_id), 30, "the job's end reported")
    assert len(hook.calls) == 1
    assert "raised unexpected" in lone_stack.worker_logs()


def test_a_gateway_restarted_mid_job_serves_its_status_and_results(
    lone_stack: Stack, photo_dir: Path
) -> None:
    _a_worker(lone_stack)
    first, first_url = start_gateway(lone_stack.env, lone_stack.log_dir)
    files = _files(_kaggle(photo_dir, 40))
    job_id = httpx.post(f"{first_url}/jobs", files=files, timeout=30).json()["job_id"]
    first.kill(signal.SIGKILL)
    first.popen.wait(10)
    second, second_url = start_gateway(lone_stack.env, lone_stack.log_dir)
    try:
        with httpx.Client(base_url=second_url, timeout=30) as client:
            final = wait_for_job(client, job_id, timeout_s=60)
            assert (final["status"], final["done"]) == ("succeeded", 40)
            _assert_complete_once(client, job_id, 40)
    finally:
        second.stop()
