"""No pool process is forked while a thread of the worker's main process is inside Kombu,
Redis or the metrics library.

A fork copies every lock as it stands but only the thread that forks. Kombu's
`cached_property` takes one lock per property, shared by every instance, on each read
(`Celery.amqp` among them), and holds it for as long as a first read takes to build the
value: connection pools, producers, imports. A pool process that dies mid-chunk makes the
sweeper publish (its first re-drive, so its first publish) and the pool fork a replacement
at the same moment. One such replacement inherited a lock held by a thread it does not
have: it ran its chunk, then waited forever in its first publish (`job_ended.delay`), and
the job never reported its end. A thread making its first publish while billiard forks
children that each publish once hangs the first child every time; once the thread has
published before, 40 forks hung none (tests/unit/worker/fork_guard_driver.py).

So the main process's threads that use those libraries (the sweeper, the consume gate) do
their work inside `held()`, and `os.register_at_fork` makes every fork wait until none is.
A pass takes milliseconds. The wait is bounded: the store sets no read timeout, so a thread
can sit inside the guard while Redis is stalled mid-command, and the pool must still replace
its processes; past `FORK_WAIT_S` the fork goes ahead, with a warning. Never fork inside
`held()`: the lock is not reentrant, so that fork would wait its whole bound for itself.
"""

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# Longer than the consume gate's wait for its consumer's answer (5 s), which cannot come
# while the fork waits: the gate then gives up, leaves the guard, and the fork goes ahead.
FORK_WAIT_S = 10.0

_lock = threading.Lock()
_held_for_fork = False


@contextmanager
def held() -> Iterator[None]:
    """While inside, no process forks (a fork waits at its start, up to `FORK_WAIT_S`)."""
    with _lock:
        yield


def is_held() -> bool:
    return _lock.locked()


def _before_fork() -> None:
    global _held_for_fork
    _held_for_fork = _lock.acquire(timeout=FORK_WAIT_S)
    if not _held_for_fork:
        log.warning(
            "forking while a thread is still inside the fork guard", extra={"waited_s": FORK_WAIT_S}
        )


def _after_fork_in_parent() -> None:
    if _held_for_fork:
        _lock.release()


def _after_fork_in_child() -> None:
    # The child has only the thread that forked; a lock of any other thread is never released.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
