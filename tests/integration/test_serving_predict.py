"""/predict end to end: real photos, a real worker, the same numbers as in-process inference,
100 concurrent requests, request ids in the worker's logs, pickled messages refused."""

import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from celery import Celery

from common.store import keys
from tests.integration.processes import Stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _photos(photo_dir: Path) -> list[Path]:
    kaggle = sorted((photo_dir / "kaggle").glob("*.jpg"))
    return kaggle[:3] + kaggle[-3:] + sorted((photo_dir / "pet").glob("*.jpg"))[:4]


def test_predict_returns_exactly_what_in_process_inference_returns(
    client: httpx.Client,
    photo_dir: Path,
    checkpoint: Path,
    in_process: Callable[[Path, list[bytes]], list[dict[str, float]]],
) -> None:
    photos = _photos(photo_dir)
    expected = in_process(checkpoint, [p.read_bytes() for p in photos])
    for path, reference in zip(photos, expected, strict=True):
        response = client.post("/predict", files={"file": (path.name, path.read_bytes())})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["probabilities"] == pytest.approx(reference, abs=1e-6)
        assert body["label"] == max(reference, key=reference.__getitem__)
        assert body["probability"] == pytest.approx(reference[body["label"]], abs=1e-6)
        assert body["model"] == {"name": "catdog", "version": "1"}
        assert body["latency_ms"] > 0


def test_predict_carries_the_request_id_into_the_worker_logs(
    client: httpx.Client, stack: Stack, photo_dir: Path
) -> None:
    photo = _photos(photo_dir)[0]
    request_id = f"trace-{time.time_ns()}"
    response = client.post(
        "/predict",
        files={"file": (photo.name, photo.read_bytes())},
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 200
    assert response.json()["request_id"] == request_id
    assert response.headers["x-request-id"] == request_id

    def worker_line() -> dict[str, object] | None:
        for line in stack.worker_logs().splitlines():
            if request_id in line and '"prediction"' in line:
                return dict(json.loads(line))
        return None

    line = wait_until(worker_line, 5, "the worker's prediction log line")
    assert line["request_id"] == request_id
    assert line["model_version"] == "1"
    assert line["label"] in ("cat", "dog")
    assert "latency_ms" in line and "probability" in line
    assert all(len(str(value)) < 300 for value in line.values())  # never image bytes


# Probes /livez on one kept-alive connection from its own process, so the test's busy
# client (100 uploads on one event loop) cannot delay the probe: only the gateway can.
LIVEZ_PROBE = """
import json, sys, time, httpx
latencies = []
with httpx.Client(base_url=sys.argv[1], timeout=10) as http:
    http.get("/livez")
    print("ready", flush=True)
    while not sys.stdin.readline().strip():  # an empty line: probe again
        started = time.perf_counter()
        assert http.get("/livez").status_code == 200
        latencies.append(time.perf_counter() - started)
        print(json.dumps(latencies[-1]), flush=True)
print(json.dumps(latencies), flush=True)
"""


def test_hundred_concurrent_predictions_all_succeed_while_livez_stays_fast(
    stack: Stack, photo_dir: Path
) -> None:
    photos = [p.read_bytes() for p in sorted((photo_dir / "kaggle").glob("*.jpg"))[:100]]
    probe = subprocess.Popen(
        [sys.executable, "-c", LIVEZ_PROBE, stack.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert probe.stdin and probe.stdout
    assert probe.stdout.readline().strip() == "ready"
    stop = threading.Event()

    def drive_probe() -> None:
        assert probe.stdin and probe.stdout
        while not stop.is_set():
            probe.stdin.write("\n")
            probe.stdin.flush()
            probe.stdout.readline()
            time.sleep(0.02)
        probe.stdin.write("stop\n")
        probe.stdin.flush()

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=limits) as http:
            uploads = (
                http.post("/predict", files={"file": (f"{i}.jpg", d)}) for i, d in enumerate(photos)
            )
            return list(await asyncio.gather(*uploads))

    driver = threading.Thread(target=drive_probe)
    driver.start()
    try:
        responses = asyncio.run(burst())
    finally:
        stop.set()
        driver.join(30)
    latencies = json.loads(probe.stdout.readlines()[-1])
    probe.wait(10)

    refused = [r.text for r in responses if r.status_code != 200]
    assert refused == [], refused[:3]
    assert all(r.json()["label"] in ("cat", "dog") for r in responses)
    assert len(latencies) >= 5
    assert max(latencies) < 0.5, (
        f"/livez took up to {max(latencies):.3f} s (median {statistics.median(latencies):.3f})"
    )


def test_a_pickled_task_message_is_rejected_and_never_executed(
    stack: Stack, photo_dir: Path
) -> None:
    """Publish a pickle-serialised catdog.predict straight onto the realtime queue."""
    redis = stack.redis
    pid = f"pickle-probe-{time.time_ns()}"
    redis.set(keys.predict_image(pid), _photos(photo_dir)[0].read_bytes(), ex=60)
    publisher = Celery("attacker", broker=stack.redis_url)
    publisher.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    publisher.send_task("catdog.predict", args=[pid, None], queue="realtime", serializer="pickle")
    publisher.close()

    # The worker takes it off the queue and refuses it: no answer is ever written.
    wait_until(lambda: redis.llen("realtime") == 0, 10, "the worker to consume the message")
    assert redis.blpop([keys.predict_reply(pid)], timeout=3) is None
    assert redis.exists(keys.predict_image(pid)) == 1
    wait_until(
        lambda: "disallowed" in stack.worker_logs().lower(),
        5,
        "the worker to log the refused content type",
    )


def test_readyz_lists_each_worker_process_with_its_model(client: httpx.Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert len(body["workers"]) == 2  # one worker, two prefork children, one model each
    for worker in body["workers"]:
        assert worker["model"] == {"name": "catdog", "version": "1"}
        assert set(worker["queues"]) == {"realtime", "bulk"}
    assert client.get("/livez").json() == {"status": "ok"}
