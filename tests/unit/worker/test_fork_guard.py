"""A pool process forked while a thread of the worker's main process publishes can publish
(worker.fork_guard). Without the guard the first forked child hung in its first publish,
waiting on a Kombu lock its parent's thread held at the fork. The main process's threads
that publish (the sweeper, the consume gate) do so inside the guard."""

import base64
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from common.store import jobs, workers
from common.store.ops import Store
from common.wire import Heartbeat, ModelRef
from tests.unit.worker.fork_guard_driver import QUEUE
from tests.unit.worker.test_sweeper import CONFIG, Recorder, new_job
from worker import fork_guard
from worker.consuming import ConsumeGate
from worker.sweeper import Sweeper

DRIVER = Path(__file__).with_name("fork_guard_driver.py")
REPO_ROOT = Path(__file__).resolve().parents[3]
FORKS = 20


def _drive(*args: str) -> dict[str, Any]:
    """The scenario in a fresh interpreter (fork_guard_driver.py says why)."""
    result = subprocess.run(
        [sys.executable, str(DRIVER), *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return outcome


def _markers(client: redis.Redis) -> list[str]:
    entries = [json.loads(entry) for entry in client.lrange(QUEUE, 0, -1)]
    return [json.loads(base64.b64decode(entry["body"]))[0][0] for entry in entries]


def test_processes_forked_while_another_thread_publishes_each_publish_too(
    redis_url: str,
) -> None:
    outcome = _drive("publish", redis_url, str(FORKS))

    assert outcome["hung"] == []
    markers = _markers(redis.Redis.from_url(redis_url))
    assert sorted(m for m in markers if m != "parent") == sorted(f"child-{i}" for i in range(FORKS))
    assert "parent" in markers  # the thread was publishing all along


def test_a_fork_waits_for_the_thread_inside_the_guard() -> None:
    outcome = _drive("wait", "0.5", "10")
    assert outcome["child_saw_thread_done"]  # forked only once the thread had left
    assert outcome["waited_s"] >= 0.4


def test_a_thread_stuck_inside_the_guard_delays_a_fork_only_its_bound() -> None:
    outcome = _drive("wait", "3", "0.3")
    assert not outcome["child_saw_thread_done"]  # forked while the thread was still inside
    assert outcome["waited_s"] < 2


def test_the_sweeper_re_drives_inside_the_guard(store: Store) -> None:
    seen: list[bool] = []

    class Watching(Recorder):
        def chunk(
            self, job_id: str, chunk: int, indices: list[int], request_id: str | None
        ) -> None:
            seen.append(fork_guard.is_held())
            super().chunk(job_id, chunk, indices, request_id)

    job_id = new_job(store)
    store(jobs.start_chunk(job_id, 1, "w@h:dead"))  # its holder has no heartbeat
    sweeper = Sweeper(store, Watching(), dataclasses.replace(CONFIG, interval_s=0.05), "test:1")
    sweeper.start()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    sweeper.stop()

    assert seen == [True]
    assert not fork_guard.is_held()


def test_the_consume_gate_asks_to_consume_inside_the_guard(store: Store) -> None:
    asked: list[bool] = []
    loaded = Heartbeat(
        worker_id="w@h:1",
        hostname="w@h",
        pid=1,
        queues=["bulk"],
        state="ready",
        model=ModelRef("catdog", "3"),
    )
    store(workers.beat(loaded, ttl_s=30))  # a process of node w@h has its model
    gate = ConsumeGate(store, "w@h", ["bulk"], lambda queue: asked.append(fork_guard.is_held()))
    gate.start()

    assert gate.opened.wait(10)
    assert asked == [True]
    assert not fork_guard.is_held()
