"""Workers on a second host: Celery over one Redis is how the service grows past one VM.

The second host is a network namespace of its own on a veth pair (`ip netns`; needs root,
as on this project's machines): its worker reaches Redis only over that link, by address,
as a worker VM reaches the Redis VM. A job spreads over both hosts; then the link goes
down mid-job and the sweeper on the first host re-drives what the second host held.
"""

import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.integration.processes import (
    Process,
    all_items,
    service_env,
    start_gateway,
    start_redis,
    start_worker,
    wait_for_job,
    wait_for_worker,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SETTINGS = {
    "chunk_size": 8,
    "batch_size": 2,
    "heartbeat_interval_s": 0.5,
    "sweep_interval_s": 0.5,
    "stall_timeout_s": 3,
    "worker_threads": 1,
}
RECOVERY_BOUND_S = 120


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class SecondHost:
    namespace: str
    host_link: str  # the first host's end of the veth pair
    first_host_ip: str  # where the second host reaches Redis


@pytest.fixture(scope="module")
def second_host() -> Iterator[SecondHost]:
    tag = uuid.uuid4().hex[:6]
    namespace, host_link, guest_link = f"catdog-{tag}", f"cd{tag}a", f"cd{tag}b"
    try:
        _ip("netns", "add", namespace)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot create a network namespace here (root and iproute2 needed): {exc}")
    try:
        _ip("link", "add", host_link, "type", "veth", "peer", "name", guest_link)
        _ip("link", "set", guest_link, "netns", namespace)
        _ip("addr", "add", "10.231.77.1/30", "dev", host_link)
        _ip("link", "set", host_link, "up")
        _ip("-n", namespace, "addr", "add", "10.231.77.2/30", "dev", guest_link)
        _ip("-n", namespace, "link", "set", guest_link, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        yield SecondHost(namespace, host_link, "10.231.77.1")
    finally:
        subprocess.run(["ip", "link", "del", host_link], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def _written(worker: Process, job_id: str) -> int:
    """Items this worker wrote for the job, from its "chunk done" log lines."""
    pattern = rf'"job_id": "{job_id}".*?"written": (\d+)'
    return sum(int(n) for n in re.findall(pattern, worker.log()))


def test_a_job_spreads_over_two_hosts_and_survives_the_second_losing_its_link(
    second_host: SecondHost,
    tmp_path_factory: pytest.TempPathFactory,
    checkpoint: Path,
    photo_dir: Path,
) -> None:
    logs = tmp_path_factory.mktemp("two-hosts")
    # Redis on the first host, reachable on loopback and on the link to the second host,
    # with a password, as a Redis other hosts reach must have.
    password = uuid.uuid4().hex
    redis_proc, redis_url = start_redis(
        logs, bind=f"127.0.0.1 {second_host.first_host_ip}", password=password
    )
    port = urlparse(redis_url).port
    env = service_env(redis_url, str(checkpoint), **SETTINGS)
    remote_url = f"redis://:{password}@{second_host.first_host_ip}:{port}"
    remote_env = {**env, "CATDOG_REDIS_URL": remote_url}
    processes = [redis_proc]
    try:
        gateway, url = start_gateway(env, logs)
        processes.append(gateway)
        first = start_worker("host1", env, logs)
        second = start_worker(
            "host2", remote_env, logs, wrapper=["ip", "netns", "exec", second_host.namespace]
        )
        processes += [first, second]
        for worker in (first, second):
            wait_for_worker(redis_url, worker.name, 1, worker)

        # Every photo three times: enough work that the link goes down mid-job, however fast
        # the forward pass (120 photos were done before the second host's first chunk once
        # the workers ran ONNX Runtime).
        photos = sorted((photo_dir / "kaggle").glob("*.jpg")) * 3
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
        with httpx.Client(base_url=url, timeout=30) as client:
            job_id = client.post("/jobs", files=files).json()["job_id"]
            wait_until(
                lambda: _written(second, job_id) > 0 and _written(first, job_id) > 0,
                90,
                "both hosts to finish a chunk of the job",
                every_s=0.1,
            )
            _ip("link", "set", second_host.host_link, "down")  # the second host drops off
            cut_at = client.get(f"/jobs/{job_id}", params={"limit": 1}).json()
            final = wait_for_job(client, job_id, timeout_s=RECOVERY_BOUND_S)
            items = all_items(client, job_id)
        assert cut_at["pending"] > 0, "the link went down after the job had ended"
        assert (final["status"], final["done"], final["failed"]) == ("succeeded", len(photos), 0)
        assert sorted(item["index"] for item in items) == list(range(len(photos)))
        assert _written(first, job_id) > 0 and _written(second, job_id) > 0
    finally:
        subprocess.run(["ip", "link", "set", second_host.host_link, "up"], capture_output=True)
        for proc in reversed(processes):
            if proc.name == "host2":  # cut off from Redis: it would not stop in time
                proc.kill(signal.SIGKILL)
            else:
                proc.stop()
