"""The hard time limit of a threaded worker: a task past it ends the process; one within it
does not."""

import threading
import time

from worker.watchdog import Watchdog


def test_a_block_past_the_limit_ends_the_process_and_names_the_task() -> None:
    expired = threading.Event()
    dog = Watchdog(0.2, on_expired=expired.set, every_s=0.05)
    release = threading.Event()

    def stuck() -> None:
        with dog.watching("predict p-1"):
            release.wait(5)

    thread = threading.Thread(target=stuck)
    thread.start()
    try:
        assert expired.wait(3)
        assert [what for what, _ in dog.overdue()] == ["predict p-1"]
    finally:
        release.set()
        thread.join()


def test_blocks_within_the_limit_never_trip_it() -> None:
    expired = threading.Event()
    dog = Watchdog(0.5, on_expired=expired.set, every_s=0.05)
    started = time.monotonic()
    while time.monotonic() - started < 1.0:  # many short tasks, together longer than the limit
        with dog.watching("predict"):
            time.sleep(0.05)
    assert not expired.is_set()
    assert dog.overdue() == []


def test_a_finished_block_is_no_longer_watched() -> None:
    expired = threading.Event()
    dog = Watchdog(0.2, on_expired=expired.set, every_s=0.05)
    with dog.watching("predict"):
        pass
    time.sleep(0.4)
    assert not expired.is_set()
