"""The gateway's connections and the checks routes share: Redis (asyncio), a Celery client
that publishes tasks by name, queue capacity and worker availability.

Publishing with Celery is blocking socket I/O, so it runs in a worker thread; everything that
waits (results, heartbeats, queue depth) uses redis.asyncio on the event loop, and so does
the /predict task, pushed with its upload in one transaction.
"""

import time
from collections.abc import Callable

import redis.asyncio as aioredis
from anyio.to_thread import run_sync
from celery import Celery
from kombu.exceptions import OperationalError

from common.errors import (
    BrokerUnavailableError,
    InsufficientStorageError,
    NoWorkerError,
    QueueFullError,
)
from common.imaging import ImageLimits, check_header
from common.messaging import (
    chunk_task_id,
    make_celery,
    predict_message,
    publish_chunk,
    publish_job_ended,
)
from common.settings import Settings
from common.store import memory, predict_mailbox, queues, workers
from common.store.ops import AsyncStore

# Extra seconds a /predict upload outlives the wait, so a worker that starts late finds it.
IMAGE_TTL_MARGIN_S = 30
# Seconds a client is told to wait when a queue is full.
RETRY_AFTER_S = 5
# Seconds a blocking wait's socket outlives the wait itself.
WAIT_MARGIN_S = 5
# Seconds a passed queue-depth or worker check is reused (see Services._recently_ok).
CHECK_REUSE_S = 1.0


class Dispatcher:
    """Publishes tasks (JSON, by name) without importing the worker's code.

    Prediction and chunk tasks carry `enqueued_at` (epoch seconds) so the worker can measure
    how long they waited in the queue."""

    def __init__(self, celery: Celery, settings: Settings, store: AsyncStore) -> None:
        self.celery = celery
        self.settings = settings
        self.store = store

    async def _run(self, fn: Callable[[], object]) -> None:
        try:
            await run_sync(fn)
        except (OperationalError, OSError) as exc:
            raise BrokerUnavailableError(f"the task queue is unavailable: {exc}") from exc

    async def predict(
        self, prediction_id: str, data: bytes, request_id: str | None, owner: str
    ) -> None:
        """Store the upload and queue its /predict task in one Redis transaction, on the event
        loop (`common.messaging.predict_message` says why not through `send_task`). `owner`:
        the API key that asked; the worker records the answer as its own."""
        settings = self.settings
        message = predict_message(
            self.celery, settings, prediction_id, request_id, owner, enqueued_at=time.time()
        )
        ttl = int(settings.predict_timeout_s) + IMAGE_TTL_MARGIN_S
        await self.store(
            predict_mailbox.post(prediction_id, data, ttl, settings.realtime_queue, message)
        )

    async def chunks(self, job_id: str, chunks: list[list[int]], request_id: str | None) -> None:
        def send() -> None:
            enqueued_at = time.time()
            for n, indices in enumerate(chunks):
                publish_chunk(
                    self.celery, self.settings, job_id, n, indices, request_id, enqueued_at
                )

        await self._run(send)

    async def revoke_chunks(self, job_id: str, count: int) -> None:
        ids = [chunk_task_id(job_id, n) for n in range(count)]
        if ids:
            await self._run(lambda: self.celery.control.revoke(ids))

    async def job_ended(self, job_id: str) -> None:
        await self._run(lambda: publish_job_ended(self.celery, self.settings, job_id))


def _redis(settings: Settings, socket_timeout: float) -> aioredis.Redis:
    """A client on a pool of its own; each waiting request holds one connection."""
    return aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=5,
            socket_connect_timeout=settings.redis_timeout_s,
            socket_timeout=socket_timeout,
        )
    )


def _celery(settings: Settings) -> Celery:
    """The publishing client: a hung Redis fails a publish within `redis_timeout_s`."""
    celery = make_celery(settings, "catdog-gateway")
    celery.conf.broker_transport_options = {
        **celery.conf.broker_transport_options,
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
    }
    return celery


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = _redis(settings, socket_timeout=settings.redis_timeout_s)
        self.store = AsyncStore(self.redis)
        # Blocking waits (a /predict's reply) get connections of their own whose socket
        # timeout outlasts the wait: on the shared pool redis-py's default socket timeout
        # (5 s) would end a longer wait with a TimeoutError.
        self._waits = _redis(settings, socket_timeout=settings.predict_timeout_s + WAIT_MARGIN_S)
        self.waits = AsyncStore(self._waits)
        self.dispatcher = Dispatcher(_celery(settings), settings, self.store)
        self.limits = ImageLimits.from_settings(settings)
        self._passed: dict[tuple[str, str], float] = {}
        self._memory: tuple[float, memory.Memory] | None = None

    async def close(self) -> None:
        await self.redis.aclose()
        await self._waits.aclose()
        self.dispatcher.celery.close()

    def validate_image(self, data: bytes) -> None:
        """The header checks (`check_header`); raises the domain error if the upload is
        unusable. On the event loop: they decode no pixel (0.09 ms for a Kaggle photo on this
        project's 2-core machine, less than a hop to a thread and back). The pixels are
        decoded once, by the worker: a file whose header is fine but whose data is corrupt
        gets the same error from there."""
        check_header(data, self.limits)

    async def ensure_capacity(self, queue: str, upload_bytes: int) -> None:
        """Room in the queue, and in Redis's memory for `upload_bytes` more."""
        await self._ensure_memory(upload_bytes)
        if self._recently_ok(("capacity", queue)):
            return
        depth = await self.store(queues.depth(queue))
        if depth >= self.settings.max_queue_depth:
            raise QueueFullError(
                f"the {queue} queue holds {depth} tasks (limit {self.settings.max_queue_depth});"
                f" retry in {RETRY_AFTER_S} s",
                retry_after_s=RETRY_AFTER_S,
            )
        self._passed[("capacity", queue)] = time.monotonic()

    async def _ensure_memory(self, upload_bytes: int) -> None:
        # A reading that let an upload through is reused like a passed check; after a
        # refusal the next upload reads again, so room that frees up is seen at once.
        now = time.monotonic()
        if self._memory is None or now - self._memory[0] >= CHECK_REUSE_S:
            self._memory = (now, await self.store(memory.usage()))
        room = self._memory[1].room_for_uploads(self.settings.redis_memory_reserve)
        if room is not None and upload_bytes > room:
            self._memory = None
            raise InsufficientStorageError(
                f"the service can store {max(0, room)} more bytes of uploads right now and"
                f" this upload holds {upload_bytes}; retry later or send fewer photos",
                retry_after_s=RETRY_AFTER_S,
            )

    async def ensure_worker(self, queue: str) -> None:
        if self._recently_ok(("worker", queue)):
            return
        verdict = workers.readiness(await self.store(workers.live()), [queue])
        if not verdict.ok:
            raise NoWorkerError(f"no worker with a loaded model serves the {queue} queue")
        self._passed[("worker", queue)] = time.monotonic()

    def _recently_ok(self, check: tuple[str, str]) -> bool:
        # A check that passed is trusted for CHECK_REUSE_S: under load it would otherwise cost
        # each request a Redis round trip for a verdict that changes every few seconds at most
        # (heartbeats). A failed check is never reused, so recovery is seen at once.
        passed = self._passed.get(check)
        return passed is not None and time.monotonic() - passed < CHECK_REUSE_S
