"""What both task bodies share: the engine they drive, one counted forward pass, and the
metrics of what it answered. Torch-free: the engine is handed in (worker.engine owns torch).
"""

import time
from collections.abc import Sequence
from typing import Protocol

from PIL import Image

from common.wire import Classification, ItemResult, ModelRef
from worker import metrics


class Engine(Protocol):
    @property
    def model(self) -> ModelRef: ...

    def predict(
        self, images: Sequence[Image.Image], timeout_s: float | None = None
    ) -> Sequence[Classification]:
        """One answer per image. `timeout_s` bounds the wait where the pass runs in another
        thread (the micro-batcher); a pass in the calling thread cannot be interrupted from
        inside and ignores it (Celery's time limits stop that thread's process)."""
        ...


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def observe_queue_wait(queue: str, enqueued_at: float | None, items: int) -> None:
    # Wall clocks of the gateway and the worker: both read time.time() (NTP-synchronised).
    if enqueued_at is not None and items > 0:
        metrics.observe_queue_wait(queue, time.time() - enqueued_at, items)


def timed_predict(
    engine: Engine, images: Sequence[Image.Image], queue: str
) -> list[Classification]:
    """One forward pass, its size and time counted (only when it succeeds)."""
    started = time.perf_counter()
    predictions = list(engine.predict(images))
    metrics.observe_batch(queue, len(images), time.perf_counter() - started)
    return predictions


class CountedEngine:
    """An engine whose forward passes are counted in the metrics of `queue`: the realtime
    path of a process that answers one request at a time (prefork child, solo)."""

    def __init__(self, engine: Engine, queue: str) -> None:
        self.engine = engine
        self.queue = queue

    @property
    def model(self) -> ModelRef:
        return self.engine.model

    def predict(
        self, images: Sequence[Image.Image], timeout_s: float | None = None
    ) -> list[Classification]:
        return timed_predict(self.engine, images, self.queue)


def observe_prediction(queue: str, found: Classification) -> None:
    metrics.observe_prediction(
        queue, found.label, found.probability, found.model.name, found.model.version
    )


def observe_results(queue: str, results: Sequence[ItemResult]) -> None:
    for r in results:
        if r.prediction is not None:
            observe_prediction(queue, r.prediction)
        else:
            metrics.observe_item_failure(queue, r.error.reason if r.error else "unknown")
