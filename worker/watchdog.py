"""The hard time limit of a threaded realtime worker.

Celery enforces task time limits in prefork children only (it kills the child); in the
`threads` pool nothing can stop a thread. A /predict task still running past
`task_time_limit_s` (a decode or a forward pass that never returns) would hold its pool slot
forever, and enough of them would silently stop the worker. The watchdog ends the whole
process instead, with exit status 70, as Celery's hard limit ends a child: the container's
restart policy starts a fresh one, and the gateway's callers of what it held were answered
504 long before (`predict_timeout_s` is far below the limit).
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

EXIT_STATUS = 70  # EX_SOFTWARE


def _exit() -> None:
    logging.shutdown()
    os._exit(EXIT_STATUS)


class Watchdog:
    def __init__(
        self, limit_s: float, on_expired: Callable[[], None] = _exit, every_s: float = 1.0
    ) -> None:
        self.limit_s = limit_s
        self._on_expired = on_expired
        self._every_s = min(every_s, limit_s / 2)
        self._started: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
        self._thread.start()

    @contextmanager
    def watching(self, what: str) -> Iterator[None]:
        """Watch the calling thread while the block runs."""
        me = threading.get_ident()
        with self._lock:
            self._started[me] = (what, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                self._started.pop(me, None)

    def overdue(self) -> list[tuple[str, float]]:
        """(what, seconds running) of each watched block past the limit."""
        now = time.monotonic()
        with self._lock:
            running = list(self._started.values())
        return [(what, now - t) for what, t in running if now - t > self.limit_s]

    def _loop(self) -> None:
        while True:
            time.sleep(self._every_s)
            overdue = self.overdue()
            if overdue:
                what, seconds = max(overdue, key=lambda o: o[1])
                log.critical(
                    "hard time limit exceeded: ending the worker process",
                    extra={"task": what, "seconds": round(seconds, 1), "limit_s": self.limit_s},
                )
                self._on_expired()
                return
