"""A worker consumes its queues only once one of its processes holds a loaded model.

A worker whose model failed to load would otherwise take its share of the work and fail it:
/predict answers 503, a job's chunks wait out their retries and then fail their items with
`model_not_available`. So the main process starts with its queues deselected (before the
consumer starts) and a gate thread watches this node's heartbeats in Redis; when one of its
processes reports "ready" it asks its own consumer, by remote control, to consume the
queues. Meanwhile the failed processes retry their load with backoff (worker.runtime), so
a worker started before any champion existed begins serving by itself once one does.
"""

import logging
import threading
from collections.abc import Callable, Sequence

import redis
from celery import Celery

from common.store import workers
from common.store.ops import Store
from worker import fork_guard

log = logging.getLogger(__name__)


# How often the gate looks: a worker starts consuming this soon after its model is ready.
POLL_S = 0.5


def hold_back(app: Celery, queues: Sequence[str]) -> None:
    """Consume none of `queues` at start (the gate adds them). Selected first: with no
    selection at all (a worker started without -Q) Celery would consume every queue."""
    app.amqp.queues.select(list(queues))
    for queue in queues:
        app.amqp.queues.deselect(queue)


class ConsumeGate:
    """Polls this node's heartbeats every `interval_s`; on the first ready one, starts
    consuming `queues` and stops."""

    def __init__(
        self,
        store: Store,
        hostname: str,
        queues: Sequence[str],
        consume: Callable[[str], None],
        interval_s: float = POLL_S,
    ) -> None:
        self.store = store
        self.hostname = hostname
        self.queues = list(queues)
        self.interval_s = interval_s
        self.consume = consume
        self.opened = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="consume-gate", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def ready(self) -> bool:
        return any(hb.hostname == self.hostname and hb.ready for hb in self.store(workers.live()))

    def _loop(self) -> None:
        waited_s = 0.0
        while not self._stopped.is_set():
            try:
                # No pool process is forked while the consume request is sent (worker.fork_guard).
                # A fork due meanwhile waits, and the consumer cannot answer until it happens:
                # the request then times out and is sent again on the next poll.
                with fork_guard.held():
                    if self.ready():
                        for queue in self.queues:
                            self.consume(queue)
                        self.opened.set()
                        log.info("model ready: consuming", extra={"queues": self.queues})
                        return
            except (redis.RedisError, OSError) as exc:
                log.warning("consume gate: Redis unavailable", extra={"error": str(exc)})
            except Exception:  # a broker hiccup while asking the consumer: try again
                log.exception("consume gate: could not start consuming")
            if waited_s == 0 or waited_s % 60 < self.interval_s:  # say so, once a minute
                log.warning(
                    "no process of this worker has a model yet; not consuming",
                    extra={"queues": self.queues, "waited_s": round(waited_s)},
                )
            self._stopped.wait(self.interval_s)
            waited_s += self.interval_s
