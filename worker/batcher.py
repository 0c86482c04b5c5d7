"""Dynamic micro-batching for /predict: the requests that a threaded realtime worker holds at
once are gathered into one forward pass.

One thread owns the forward pass. Callers (the pool's task threads) hand it one decoded
image each and block on its answer. The batcher takes the first waiting item, then keeps
taking until it holds `max_batch_size` items or `max_wait_ms` has passed since that first
item arrived, whichever comes first, and runs them together. With `max_wait_ms=0` it never
waits: it runs whatever is already queued, so a lone request pays nothing for batching while
requests that arrive during a forward pass are gathered for the next one.

`BatchedEngine` puts an engine behind the batcher. Torch-free: the engine
(worker.engine.InferenceEngine) is handed in.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from PIL import Image

from common.errors import PredictTimeoutError
from common.wire import Classification, ModelRef
from worker import metrics
from worker.forward import Engine

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")

# Run: items in, one answer per item out, in order.
Run = Callable[[Sequence[In]], Sequence[Out]]
# Told after each batch: its size, the first item's wait for it, the forward pass's seconds.
OnBatch = Callable[[int, float, float], None]


class BatcherClosedError(RuntimeError):
    """The batcher stopped (its model was replaced or its process is shutting down)."""


@dataclass
class _Waiting(Generic[In, Out]):
    item: In
    future: Future[Out]
    arrived: float


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self,
        run: Callable[[Sequence[In]], Sequence[Out]],
        max_batch_size: int,
        max_wait_ms: float,
        on_batch: OnBatch | None = None,
        name: str = "batcher",
        warm_up: Callable[[], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_ms) / 1000
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Waiting[In, Out] | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        # Held while a submit checks `_closed` and queues its item, and while the batcher
        # closes: an item is either queued before the close marker (and answered) or
        # refused, never queued after the thread has drained and gone.
        self._closing = threading.Lock()
        self._warm_up = warm_up
        # Done once the thread has run `warm_up`, before its first pass; holds the exception
        # when the warm-up failed (the batcher is closed then).
        self.ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: In) -> Future[Out]:
        future: Future[Out] = Future()
        with self._closing:
            if self._closed.is_set():
                raise BatcherClosedError("the batcher is closed")
            self._queue.put(_Waiting(item, future, time.perf_counter()))
        return future

    def waiting(self) -> int:
        """Items queued and not yet taken into a batch."""
        return self._queue.qsize()

    def __call__(self, item: In, timeout: float | None = None) -> Out:
        """Submit one item and wait for its answer (or its exception)."""
        return self.submit(item).result(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Answer what is queued, then stop the thread."""
        with self._closing:
            if not self._closed.is_set():
                self._closed.set()
                self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        if not self._warmed_up():
            return
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = self._gather(batch)
            self._answer(batch)
            if stopping:
                self._drain()
                return

    def _warmed_up(self) -> bool:
        try:
            if self._warm_up is not None:
                self._warm_up()
        except BaseException as exc:
            with self._closing:
                self._closed.set()
            self.ready.set_exception(exc)
            self._refuse_queued()
            return False
        self.ready.set_result(None)
        return True

    def _gather(self, batch: list[_Waiting[In, Out]]) -> bool:
        """Fill `batch` up to the size or the deadline; True when a close was seen."""
        deadline = batch[0].arrived + self.max_wait_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            try:
                waiting = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                return False
            if waiting is None:
                return True
            batch.append(waiting)
        return False

    def _taken_queued(self) -> list[_Waiting[In, Out]]:
        """Everything queued now, taken off the queue (close markers dropped)."""
        taken: list[_Waiting[In, Out]] = []
        while True:
            try:
                waiting = self._queue.get_nowait()
            except queue.Empty:
                return taken
            if waiting is not None:
                taken.append(waiting)

    def _refuse_queued(self) -> None:
        for waiting in self._taken_queued():
            if waiting.future.set_running_or_notify_cancel():
                waiting.future.set_exception(BatcherClosedError("the batcher did not start"))

    def _drain(self) -> None:
        rest = self._taken_queued()
        for start in range(0, len(rest), self.max_batch_size):
            self._answer(rest[start : start + self.max_batch_size])

    def _answer(self, batch: list[_Waiting[In, Out]]) -> None:
        live = [w for w in batch if w.future.set_running_or_notify_cancel()]
        if not live:
            return
        started = time.perf_counter()
        try:
            answers = self._run([w.item for w in live])
            if len(answers) != len(live):
                raise RuntimeError(f"{len(answers)} answers for {len(live)} items")
        except Exception as exc:  # each caller sees the exception of its own batch
            for w in live:
                w.future.set_exception(exc)
            return
        self._observe(len(live), started - live[0].arrived, time.perf_counter() - started)
        for w, answer in zip(live, answers, strict=True):
            w.future.set_result(answer)

    def _observe(self, size: int, wait_s: float, run_s: float) -> None:
        if self._on_batch is None:
            return
        try:
            self._on_batch(size, wait_s, run_s)
        except Exception:  # metrics never fail an answer
            log.exception("batch observer failed")


@runtime_checkable
class PreparingEngine(Engine, Protocol):
    """An engine whose preprocessing and forward pass can run in different threads."""

    def prepare(self, image: Image.Image) -> Any:
        """One decoded image as the model's input tensor."""
        ...

    def predict_tensors(self, tensors: Sequence[Any]) -> Sequence[Classification]:
        """Tensors from `prepare`, answered `batch_size` at a time."""
        ...


class BatchedEngine:
    """The realtime face of an engine (the `worker.forward.Engine` protocol): concurrent
    callers' images are answered together by the batcher's thread, each pass counted in the
    metrics of `queue`.

    On a CPU the batcher's thread runs the preprocessing and the forward pass, and it is the
    only thread of the process that ever does (warm-up included): torch's OpenMP thread team
    belongs to the thread that first uses it, and on this kind of CPU a second thread driving
    a model that another thread warmed ran its forward passes at half speed (measured; see
    bench/README.md). The callers' threads only decode.

    With `prepare_in_callers` (a GPU worker, one torch thread per process) each caller also
    preprocesses its own photo and the batcher's thread only runs the GPU's passes: done in
    that one thread, a pass of 8 photos took 78 ms of which the forward pass was about 9 on
    the H200 machine, and the batcher's thread was the worker's limit
    (bench/results/2026-12-04-gpu-h200.md).
    """

    def __init__(
        self,
        engine: Engine,
        max_batch_size: int,
        max_wait_ms: float,
        queue: str,
        prepare_in_callers: bool = False,
        warm_up: Callable[[], None] | None = None,
    ) -> None:
        """`warm_up` runs on the batcher's thread before its first pass, and the engine is
        returned only once it has: the thread that runs the passes must be the one that
        warmed the model (above). Its exception, if it fails, is raised here."""
        self.engine = engine
        self.queue = queue
        self._prepare: Callable[[Image.Image], Any] | None = None
        run: Callable[[Sequence[Any]], Sequence[Classification]] = engine.predict
        if prepare_in_callers:
            assert isinstance(engine, PreparingEngine)
            self._prepare, run = engine.prepare, engine.predict_tensors
        self.batcher: MicroBatcher[Any, Classification] = MicroBatcher(
            run, max_batch_size, max_wait_ms, self._observe, "micro-batcher", warm_up
        )
        self.batcher.ready.result()

    @property
    def model(self) -> ModelRef:
        return self.engine.model

    def predict(
        self, images: Sequence[Image.Image], timeout_s: float | None = None
    ) -> list[Classification]:
        """The answers, or PredictTimeoutError once `timeout_s` has passed: the calling task
        thread is free again, and images not yet taken into a pass are never run."""
        items = images if self._prepare is None else [self._prepare(i) for i in images]
        futures = [self.batcher.submit(item) for item in items]
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            return [
                f.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
                for f in futures
            ]
        except TimeoutError:
            for f in futures:
                f.cancel()
            raise PredictTimeoutError(
                f"no forward pass answered within {timeout_s:.1f} s (the worker is overloaded)"
            ) from None

    def close(self) -> None:
        self.batcher.close()

    def _observe(self, size: int, gathered_s: float, seconds: float) -> None:
        metrics.observe_batch(self.queue, size, seconds, gathered_s)
