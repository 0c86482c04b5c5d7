"""The micro-batcher: concurrent requests share forward passes, a lone one never waits."""

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from worker.batcher import BatcherClosedError, MicroBatcher


class Recorder:
    """A `run` that records each batch; `gate` holds a batch until the test releases it."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.started = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(5)
        return [item * 10 for item in items]


def test_a_lone_request_runs_at_once_as_a_batch_of_one() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=8, max_wait_ms=0)
    started = time.perf_counter()
    assert batcher(3, timeout=5) == 30
    assert time.perf_counter() - started < 0.5
    assert run.batches == [[3]]
    batcher.close()


def test_requests_that_arrive_during_a_pass_share_the_next_one() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    batcher = MicroBatcher(run, max_batch_size=4, max_wait_ms=0)
    first = batcher.submit(0)
    assert run.started.wait(5)  # the first pass is running and held
    later = [batcher.submit(i) for i in range(1, 7)]
    gate.set()
    assert first.result(5) == 0
    assert [f.result(5) for f in later] == [10, 20, 30, 40, 50, 60]
    # Answers in order, and never more than max_batch_size per pass.
    assert run.batches == [[0], [1, 2, 3, 4], [5, 6]]
    batcher.close()


def test_max_wait_gathers_requests_that_arrive_close_together() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=8, max_wait_ms=300)
    futures = [batcher.submit(i) for i in range(3)]
    assert [f.result(5) for f in futures] == [0, 10, 20]
    assert run.batches == [[0, 1, 2]]
    batcher.close()


def test_a_full_batch_runs_without_waiting_out_max_wait() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=2, max_wait_ms=10_000)
    started = time.perf_counter()
    futures = [batcher.submit(i) for i in range(2)]
    assert [f.result(5) for f in futures] == [0, 10]
    assert time.perf_counter() - started < 5
    batcher.close()


def test_a_failed_pass_fails_only_the_requests_in_it() -> None:
    def run(items: Sequence[int]) -> list[int]:
        if 13 in items:
            raise ValueError("bad input")
        return list(items)

    batcher = MicroBatcher(run, max_batch_size=1, max_wait_ms=0)
    bad, good = batcher.submit(13), batcher.submit(1)
    with pytest.raises(ValueError, match="bad input"):
        bad.result(5)
    assert good.result(5) == 1
    batcher.close()


def test_the_observer_sees_each_pass_size_and_wait() -> None:
    seen: list[tuple[int, float, float]] = []
    gate = threading.Event()
    run = Recorder(gate)
    batcher = MicroBatcher(run, 8, 0, on_batch=lambda n, w, s: seen.append((n, w, s)))
    first = batcher.submit(0)
    assert run.started.wait(5)
    rest = [batcher.submit(i) for i in (1, 2)]
    gate.set()
    [f.result(5) for f in (first, *rest)]
    batcher.close()
    assert [n for n, _, _ in seen] == [1, 2]
    assert all(wait >= 0 and seconds >= 0 for _, wait, seconds in seen)


def test_close_answers_what_is_queued_then_refuses_more() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    batcher = MicroBatcher(run, max_batch_size=2, max_wait_ms=0)
    futures = [batcher.submit(i) for i in range(5)]
    assert run.started.wait(5)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    gate.set()
    closer.join(5)
    assert [f.result(0) for f in futures] == [0, 10, 20, 30, 40]
    with pytest.raises(BatcherClosedError):
        batcher.submit(9)


def test_the_warm_up_runs_on_the_batchers_thread_before_its_first_pass() -> None:
    events: list[tuple[str, str]] = []

    def warm_up() -> None:
        events.append(("warm-up", threading.current_thread().name))

    def run(items: Sequence[int]) -> list[int]:
        events.append(("pass", threading.current_thread().name))
        return list(items)

    batcher = MicroBatcher(run, 4, 0, name="passes", warm_up=warm_up)
    assert batcher(1, timeout=5) == 1
    batcher.close()
    assert batcher.ready.done()
    assert events == [("warm-up", "passes"), ("pass", "passes")]


def test_a_failed_warm_up_is_reported_and_the_batcher_takes_no_work() -> None:
    def warm_up() -> None:
        raise RuntimeError("CUDA out of memory")

    batcher = MicroBatcher(Recorder(), 4, 0, warm_up=warm_up)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.ready.result(5)
    with pytest.raises(BatcherClosedError):
        batcher.submit(1)


class _CloseDuringPut:
    """The batcher's queue, except that the first item's `put` lets a close run first (for
    at most half a second): the moment between `submit`'s closed check and its put."""

    def __init__(self, batcher: MicroBatcher[int, int]) -> None:
        self.inner = batcher._queue
        self.closer = threading.Thread(target=batcher.close)

    def put(self, waiting: Any) -> None:
        if waiting is not None and not self.closer.is_alive() and self.closer.ident is None:
            self.closer.start()
            self.closer.join(0.5)
        self.inner.put(waiting)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_request_submitted_as_the_batcher_closes_is_still_answered() -> None:
    batcher = MicroBatcher(Recorder(), max_batch_size=4, max_wait_ms=0)
    racing = _CloseDuringPut(batcher)
    batcher._queue = racing  # type: ignore[assignment]
    future = batcher.submit(4)  # accepted: it must be answered, not left waiting
    assert future.result(timeout=5) == 40
    racing.closer.join(5)
    with pytest.raises(BatcherClosedError):
        batcher.submit(5)
