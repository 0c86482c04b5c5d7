"""A pool process forked while a thread of the worker's main process publishes can publish
(worker.fork_guard). Without the guard the first forked child hung in its first publish,
waiting on a Kombu lock its parent's thread held at the fork. The main process's threads
that publish (the sweeper, the consume gate) do so inside the guard."""

import base64
import dataclasses
import json
import os
import signal
import threading
import time

import billiard
import pytest
import redis
from celery import Celery

from common.messaging import make_celery
from common.settings import Settings
from common.store import jobs, workers
from common.store.ops import Store
from common.wire import Heartbeat, ModelRef
from tests.unit.worker.test_sweeper import CONFIG, Recorder, new_job
from worker import fork_guard
from worker.consuming import ConsumeGate
from worker.sweeper import Sweeper

QUEUE = "fork-guard-test"
FORKS = 20


def _publish_once(app: Celery, marker: str) -> None:  # in the forked child
    app.send_task("catdog.test.noop", args=[marker], queue=QUEUE, ignore_result=True)


def _markers(client: redis.Redis) -> list[str]:
    entries = [json.loads(entry) for entry in client.lrange(QUEUE, 0, -1)]
    return [json.loads(base64.b64decode(entry["body"]))[0][0] for entry in entries]


def test_processes_forked_while_another_thread_publishes_each_publish_too(
    redis_url: str,
) -> None:
    app = make_celery(Settings(redis_url=redis_url), "fork-guard-test")
    stop = threading.Event()

    def publish_in_a_loop() -> None:  # as the sweeper publishes re-drives
        while not stop.is_set():
            with fork_guard.held():
                app.send_task("catdog.test.noop", args=["parent"], queue=QUEUE)

    publisher = threading.Thread(target=publish_in_a_loop, daemon=True)
    publisher.start()
    hung = []
    try:
        for i in range(FORKS):
            child = billiard.Process(target=_publish_once, args=(app, f"child-{i}"))
            child.start()
            child.join(timeout=10)
            if child.is_alive():
                hung.append(i)
                os.kill(child.pid, signal.SIGKILL)
                child.join()
    finally:
        stop.set()
        publisher.join(timeout=10)

    assert hung == []
    markers = _markers(redis.Redis.from_url(redis_url))
    assert sorted(m for m in markers if m != "parent") == sorted(f"child-{i}" for i in range(FORKS))
    assert "parent" in markers  # the thread was publishing all along


def _exit_with(flag: threading.Event) -> None:  # in the forked child: what it saw at the fork
    os._exit(0 if flag.is_set() else 1)


def _fork_while_a_thread_holds_the_guard(for_s: float) -> tuple[int | None, float]:
    """Fork while a thread is inside the guard for `for_s`; the child reports whether the
    thread had left it, and the fork's wait is timed."""
    entered, leaving = threading.Event(), threading.Event()

    def hold() -> None:
        with fork_guard.held():
            entered.set()
            time.sleep(for_s)
            leaving.set()

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait()
    started = time.monotonic()
    child = billiard.Process(target=_exit_with, args=(leaving,))
    child.start()
    waited = time.monotonic() - started
    child.join(timeout=10)
    holder.join()
    return child.exitcode, waited


def test_a_fork_waits_for_the_thread_inside_the_guard() -> None:
    exitcode, waited = _fork_while_a_thread_holds_the_guard(0.5)
    assert exitcode == 0  # the child was forked after the thread had done its work
    assert waited >= 0.4


def test_a_thread_stuck_inside_the_guard_delays_a_fork_only_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fork_guard, "FORK_WAIT_S", 0.3)
    exitcode, waited = _fork_while_a_thread_holds_the_guard(3)
    assert exitcode == 1  # forked while the thread was still inside
    assert waited < 2


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
