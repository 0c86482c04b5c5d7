"""Run by test_fork_guard.py in a fresh interpreter: the fork scenarios need a process whose
threads are the scenario's alone (a test process holds whatever threads, Celery apps and
connections earlier tests left). Prints one JSON object.

    python fork_guard_driver.py publish REDIS_URL FORKS [--unguarded]
        a thread publishes in a loop (inside the guard) while FORKS billiard children are
        forked one after another, each publishing once: which children hung
    python fork_guard_driver.py wait HOLD_S BOUND_S
        a thread holds the guard for HOLD_S while the main thread forks, with the fork's
        wait bounded at BOUND_S: whether the child saw the thread done, and the fork's wait
"""

import contextlib
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import billiard

from common.messaging import make_celery
from common.settings import Settings
from worker import fork_guard

QUEUE = "fork-guard-test"


def _publish_once(app: Any, marker: str) -> None:  # in the forked child
    app.send_task("catdog.test.noop", args=[marker], queue=QUEUE, ignore_result=True)


def publish(redis_url: str, forks: int, guarded: bool) -> dict[str, Any]:
    app = make_celery(Settings(redis_url=redis_url), "fork-guard-test")
    stop = threading.Event()
    inside = fork_guard.held if guarded else contextlib.nullcontext

    def publish_in_a_loop() -> None:  # as the sweeper publishes its re-drives
        while not stop.is_set():
            with inside():
                app.send_task("catdog.test.noop", args=["parent"], queue=QUEUE)

    publisher = threading.Thread(target=publish_in_a_loop, daemon=True)
    publisher.start()
    hung = []
    for i in range(forks):
        child = billiard.Process(target=_publish_once, args=(app, f"child-{i}"))
        child.start()
        child.join(timeout=10)
        if child.is_alive():
            hung.append(i)
            os.kill(child.pid, signal.SIGKILL)
            child.join()
    stop.set()
    publisher.join(timeout=10)
    return {"hung": hung}


def wait(hold_s: float, bound_s: float) -> dict[str, Any]:
    fork_guard.FORK_WAIT_S = bound_s
    entered, leaving = threading.Event(), threading.Event()

    def hold() -> None:
        with fork_guard.held():
            entered.set()
            time.sleep(hold_s)
            leaving.set()

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: what it saw at the fork
        os._exit(0 if leaving.is_set() else 1)
    waited = time.monotonic() - started
    _, status = os.waitpid(pid, 0)
    holder.join()
    return {"child_saw_thread_done": os.waitstatus_to_exitcode(status) == 0, "waited_s": waited}


def main(argv: list[str]) -> int:
    if argv[0] == "publish":
        result = publish(argv[1], int(argv[2]), guarded="--unguarded" not in argv)
    else:
        result = wait(float(argv[1]), float(argv[2]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
