"""The Redis store shared by the gateway (asyncio client) and the workers (blocking client):
jobs, their items' images and results, /predict hand-offs and worker heartbeats.

Key layout (every key starts with `catdog:`; `{id}` is a job id, `{pid}` a prediction id):

    catdog:job:{id}              hash    status, total, done, failed, timestamps, callback
    catdog:job:{id}:names        list    file name of each item, by index
    catdog:job:{id}:results      hash    index -> item result (JSON); written once per index
    catdog:job:{id}:attempts     hash    index -> times a worker started on the item
    catdog:job:{id}:deliveries   hash    chunk -> times the chunk was delivered
    catdog:job:{id}:img:{index}  string  the uploaded bytes, deleted once the item has a result
    catdog:job-tomb:{id}         string  outlives the job by `job_tombstone_ttl_s`: 410, not 404
    catdog:idem:{sha256(key)}    string  Idempotency-Key -> job id, for the job's lifetime
    catdog:predict:{pid}:img     string  the /predict upload, for one task
    catdog:predict:{pid}:reply   list    the worker's one answer; the gateway BLPOPs it
    catdog:workers               zset    worker process id -> heartbeat expiry (Redis clock)
    catdog:worker:{wid}          string  heartbeat (JSON): queues, state, model, version
    catdog:model:generation      string  bumped by `python -m worker.reload`

Every job key carries the job's TTL. Result writes go through one Lua script that stores an
index only if it has no result yet, derives the counts from those first writes, refuses
every write once the job is cancelled, and moves the job to its final status exactly once:
a redelivered chunk can never duplicate an item, and nothing finishes after a cancel.
Torch-free.
"""

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.typing import EncodableT

from common.errors import CatDogError

PREFIX = "catdog"


class JobNotFoundError(CatDogError):
    reason = "job_not_found"


class JobExpiredError(CatDogError):
    reason = "job_expired"


class JobFinishedError(CatDogError):
    """The job already ended (succeeded or failed), so it cannot be cancelled."""

    reason = "job_finished"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class Keys:
    @staticmethod
    def job(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}"

    @staticmethod
    def names(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:names"

    @staticmethod
    def results(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:results"

    @staticmethod
    def attempts(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:attempts"

    @staticmethod
    def deliveries(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}:deliveries"

    @staticmethod
    def image(job_id: str, index: int) -> str:
        return f"{PREFIX}:job:{job_id}:img:{index}"

    @staticmethod
    def tombstone(job_id: str) -> str:
        return f"{PREFIX}:job-tomb:{job_id}"

    @staticmethod
    def idempotency(key: str) -> str:
        # Hashed: the client's key is arbitrary text and may be long.
        return f"{PREFIX}:idem:{hashlib.sha256(key.encode()).hexdigest()}"

    @staticmethod
    def predict_image(pid: str) -> str:
        return f"{PREFIX}:predict:{pid}:img"

    @staticmethod
    def predict_reply(pid: str) -> str:
        return f"{PREFIX}:predict:{pid}:reply"

    workers = f"{PREFIX}:workers"
    worker_prefix = f"{PREFIX}:worker:"
    model_generation = f"{PREFIX}:model:generation"

    @staticmethod
    def worker(worker_id: str) -> str:
        return f"{Keys.worker_prefix}{worker_id}"


# --- records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemError:
    reason: str
    message: str


@dataclass(frozen=True)
class ItemResult:
    """One item's outcome: a prediction, or the error that stopped it."""

    index: int
    label: str | None = None
    probability: float | None = None
    probabilities: dict[str, float] | None = None
    model_name: str | None = None
    model_version: str | None = None
    error: ItemError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, index: int, reason: str, message: str) -> "ItemResult":
        return cls(index, error=ItemError(reason, message))

    def to_json(self) -> str:
        payload = asdict(self)
        payload.pop("index")  # the hash field is the index
        return json.dumps(payload, separators=(",", ":"))

    @classmethod
    def from_json(cls, index: int, raw: bytes | str) -> "ItemResult":
        data = json.loads(raw)
        error = data.pop("error", None)
        return cls(index=index, error=ItemError(**error) if error else None, **data)


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def iso_time(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch is not None else None


def _float(value: bytes | str | None) -> float | None:
    text = _text(value)
    return float(text) if text else None


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    status: JobStatus
    total: int
    done: int
    failed: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    cancelled_at: float | None = None
    expires_at: float | None = None
    callback_url: str | None = None
    callback_status: str | None = None
    request_id: str | None = None
    chunks: int = 0

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed

    def summary(self) -> dict[str, Any]:
        """The job without its items, as JSON-ready values (callback bodies use it)."""
        return {
            "job_id": self.job_id,
            "status": self.status.value,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "created_at": iso_time(self.created_at),
            "started_at": iso_time(self.started_at),
            "finished_at": iso_time(self.finished_at),
            "cancelled_at": iso_time(self.cancelled_at),
        }

    @classmethod
    def from_hash(cls, job_id: str, raw: dict[Any, Any], ttl_ms: int | None = None) -> "JobRecord":
        data = {_text(k): v for k, v in raw.items()}
        expires_at = time.time() + ttl_ms / 1000 if ttl_ms and ttl_ms > 0 else None
        return cls(
            job_id=job_id,
            status=JobStatus(str(_text(data["status"]))),
            total=int(data["total"]),
            done=int(data.get("done", 0)),
            failed=int(data.get("failed", 0)),
            created_at=float(data["created_at"]),
            started_at=_float(data.get("started_at")),
            finished_at=_float(data.get("finished_at")),
            cancelled_at=_float(data.get("cancelled_at")),
            expires_at=expires_at,
            callback_url=_text(data.get("callback_url")) or None,
            callback_status=_text(data.get("callback_status")) or None,
            request_id=_text(data.get("request_id")) or None,
            chunks=int(data.get("chunks", 0)),
        )


@dataclass(frozen=True)
class JobPage:
    record: JobRecord
    offset: int
    limit: int
    names: list[str]
    results: list[ItemResult | None]  # None: not finished yet


@dataclass(frozen=True)
class Heartbeat:
    """What one model-owning worker process says about itself, every few seconds."""

    worker_id: str
    hostname: str
    pid: int
    queues: list[str]
    state: str  # loading | ready | failed
    device: str = "cpu"
    model_name: str | None = None
    model_version: str | None = None
    generation: int = 0
    error: str | None = None
    updated_at: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.model_version is not None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Heartbeat":
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Completion:
    accepted: bool  # False: the job is gone or already ended; nothing was written
    written: int  # indices written for the first time
    finished: bool  # this write moved the job to its final status


# --- Lua scripts -------------------------------------------------------------------------

# KEYS: meta, results. ARGV: now, then (index, ok 1|0, json) per item.
_COMPLETE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {0, 0, 0} end
if status == 'cancelled' or status == 'succeeded' or status == 'failed' then
  return {0, 0, 0}
end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
end
local written = 0
for i = 2, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 2]) == 1 then
    written = written + 1
    if ARGV[i + 1] == '1' then
      redis.call('HINCRBY', KEYS[1], 'done', 1)
    else
      redis.call('HINCRBY', KEYS[1], 'failed', 1)
    end
  end
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local done = tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
local failed = tonumber(redis.call('HGET', KEYS[1], 'failed') or '0')
if done + failed >= total then
  local final = 'succeeded'
  if done == 0 then final = 'failed' end
  redis.call('HSET', KEYS[1], 'status', final, 'finished_at', ARGV[1])
  return {1, written, 1}
end
return {1, written, 0}
"""

# KEYS: meta, deliveries. ARGV: now, chunk. Returns {status or '', deliveries}.
_START_CHUNK = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'', 0} end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
  status = 'running'
end
local n = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return {status, n}
"""

# KEYS: meta. ARGV: now. Returns {status before, changed 1|0} ('' when there is no job).
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'', 0} end
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancelled_at', ARGV[1],
             'finished_at', ARGV[1])
  return {status, 1}
end
return {status, 0}
"""

# KEYS: workers zset, worker key. ARGV: worker id, heartbeat json, ttl ms.
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]) / 1000, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return 1
"""

# KEYS: workers zset. ARGV: worker key prefix. Returns the live heartbeats (JSON).
_LIVE_WORKERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
if #ids == 0 then return {} end
local keys = {}
for i, id in ipairs(ids) do keys[i] = ARGV[1] .. id end
return redis.call('MGET', unpack(keys))
"""

# KEYS: idempotency key. ARGV: job id. Deletes the key only if it still names this job.
_RELEASE_IDEMPOTENCY = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _completion_args(now: float, results: Iterable[ItemResult]) -> list[str]:
    args = [repr(now)]
    for item in results:
        args += [str(item.index), "1" if item.ok else "0", item.to_json()]
    return args


def _heartbeats(raw: Sequence[bytes | None]) -> list[Heartbeat]:
    return [Heartbeat.from_json(value) for value in raw if value]


# --- worker side (blocking) ---------------------------------------------------------------


class JobStore:
    """The workers' view: read images, record results, report liveness."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._complete = client.register_script(_COMPLETE)
        self._start_chunk = client.register_script(_START_CHUNK)
        self._beat = client.register_script(_BEAT)
        self._live = client.register_script(_LIVE_WORKERS)

    @classmethod
    def from_url(cls, url: str) -> "JobStore":
        return cls(redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30))

    def job(self, job_id: str) -> JobRecord | None:
        raw = self.redis.hgetall(Keys.job(job_id))
        return JobRecord.from_hash(job_id, raw) if raw else None

    def start_chunk(self, job_id: str, chunk: int) -> tuple[JobStatus | None, int]:
        """Mark the job running; return its status and how often this chunk was delivered."""
        status, deliveries = self._start_chunk(
            keys=[Keys.job(job_id), Keys.deliveries(job_id)], args=[repr(time.time()), chunk]
        )
        text = _text(status)
        return (JobStatus(text) if text else None), int(deliveries)

    def status(self, job_id: str) -> JobStatus | None:
        text = _text(self.redis.hget(Keys.job(job_id), "status"))
        return JobStatus(text) if text else None

    def unfinished(self, job_id: str, indices: Sequence[int]) -> list[int]:
        if not indices:
            return []
        existing = self.redis.hmget(Keys.results(job_id), [str(i) for i in indices])
        return [i for i, value in zip(indices, existing, strict=True) if value is None]

    def count_attempts(self, job_id: str, indices: Sequence[int]) -> list[int]:
        """Record that a worker starts on these items; return each item's attempt number."""
        pipe = self.redis.pipeline()
        for index in indices:
            pipe.hincrby(Keys.attempts(job_id), str(index), 1)
        pipe.expire(Keys.attempts(job_id), self._ttl(job_id))
        return [int(n) for n in pipe.execute()[:-1]]

    def images(self, job_id: str, indices: Sequence[int]) -> list[bytes | None]:
        if not indices:
            return []
        values = self.redis.mget([Keys.image(job_id, i) for i in indices])
        return [value if isinstance(value, bytes) else None for value in values]

    def drop_images(self, job_id: str, indices: Sequence[int]) -> None:
        if indices:
            self.redis.unlink(*[Keys.image(job_id, i) for i in indices])

    def complete(self, job_id: str, results: Sequence[ItemResult]) -> Completion:
        accepted, written, finished = self._complete(
            keys=[Keys.job(job_id), Keys.results(job_id)],
            args=_completion_args(time.time(), results),
        )
        return Completion(bool(accepted), int(written), bool(finished))

    def set_callback_status(self, job_id: str, status: str) -> None:
        # HSET on a missing (expired) job would recreate a meta key without a TTL.
        if self.redis.exists(Keys.job(job_id)):
            self.redis.hset(Keys.job(job_id), "callback_status", status)

    def _ttl(self, job_id: str) -> int:
        ttl = int(self.redis.ttl(Keys.job(job_id)))
        return ttl if ttl > 0 else 60

    # /predict hand-off
    def predict_image(self, pid: str) -> bytes | None:
        value = self.redis.get(Keys.predict_image(pid))
        return value if isinstance(value, bytes) else None

    def reply_predict(self, pid: str, payload: dict[str, Any], ttl_s: int = 60) -> None:
        pipe = self.redis.pipeline()
        pipe.rpush(Keys.predict_reply(pid), json.dumps(payload))
        pipe.expire(Keys.predict_reply(pid), ttl_s)
        pipe.unlink(Keys.predict_image(pid))
        pipe.execute()

    # liveness and reloads
    def beat(self, heartbeat: Heartbeat, ttl_s: float) -> None:
        self._beat(
            keys=[Keys.workers, Keys.worker(heartbeat.worker_id)],
            args=[heartbeat.worker_id, heartbeat.to_json(), int(ttl_s * 1000)],
        )

    def forget_worker(self, worker_id: str) -> None:
        self.redis.zrem(Keys.workers, worker_id)
        self.redis.delete(Keys.worker(worker_id))

    def live_workers(self) -> list[Heartbeat]:
        return _heartbeats(self._live(keys=[Keys.workers], args=[Keys.worker_prefix]))

    def model_generation(self) -> int:
        return int(self.redis.get(Keys.model_generation) or 0)

    def request_reload(self) -> int:
        return int(self.redis.incr(Keys.model_generation))


# --- gateway side (asyncio) --------------------------------------------------------------


@dataclass(frozen=True)
class NewJob:
    job_id: str
    names: list[str]
    rejected: list[ItemResult]  # items refused at upload (for example over the size limit)
    chunks: int
    callback_url: str | None
    request_id: str | None


class AsyncJobStore:
    """The gateway's view: store uploads, create, read and cancel jobs, read heartbeats."""

    def __init__(self, client: aioredis.Redis, job_ttl_s: int, tombstone_ttl_s: int) -> None:
        self.redis = client
        self.job_ttl_s = job_ttl_s
        self.tombstone_ttl_s = tombstone_ttl_s
        self._cancel = client.register_script(_CANCEL)
        self._live = client.register_script(_LIVE_WORKERS)
        self._release = client.register_script(_RELEASE_IDEMPOTENCY)

    async def ping(self) -> None:
        await self.redis.ping()

    async def queue_depth(self, queue: str) -> int:
        # Kombu keeps a queue's waiting messages in a list named after the queue.
        return int(await self.redis.llen(queue))

    async def live_workers(self) -> list[Heartbeat]:
        return _heartbeats(await self._live(keys=[Keys.workers], args=[Keys.worker_prefix]))

    # uploads
    async def store_image(self, job_id: str, index: int, data: bytes) -> None:
        await self.redis.set(Keys.image(job_id, index), data, ex=self.job_ttl_s)

    async def discard_upload(self, job_id: str, count: int) -> None:
        keys = [Keys.image(job_id, i) for i in range(count)]
        for start in range(0, len(keys), 500):
            await self.redis.unlink(*keys[start : start + 500])

    async def create_job(self, job: NewJob) -> JobRecord:
        now = time.time()
        total = len(job.names)
        failed = len(job.rejected)
        status = JobStatus.FAILED if failed == total else JobStatus.QUEUED
        meta: dict[EncodableT, EncodableT] = {
            "status": status.value,
            "total": str(total),
            "done": "0",
            "failed": str(failed),
            "created_at": repr(now),
            "chunks": str(job.chunks),
            "callback_url": job.callback_url or "",
            "request_id": job.request_id or "",
        }
        if status is JobStatus.FAILED:
            meta["finished_at"] = repr(now)
        ttl = self.job_ttl_s
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(Keys.job(job.job_id), mapping=meta)
        pipe.expire(Keys.job(job.job_id), ttl)
        pipe.rpush(Keys.names(job.job_id), *job.names)
        pipe.expire(Keys.names(job.job_id), ttl)
        if job.rejected:
            pipe.hset(
                Keys.results(job.job_id), mapping={str(r.index): r.to_json() for r in job.rejected}
            )
            pipe.expire(Keys.results(job.job_id), ttl)
        pipe.set(Keys.tombstone(job.job_id), "1", ex=ttl + self.tombstone_ttl_s)
        await pipe.execute()
        return JobRecord(
            job_id=job.job_id,
            status=status,
            total=total,
            done=0,
            failed=failed,
            created_at=now,
            finished_at=now if status is JobStatus.FAILED else None,
            expires_at=now + ttl,
            callback_url=job.callback_url,
            request_id=job.request_id,
            chunks=job.chunks,
        )

    # reads
    async def _missing(self, job_id: str) -> CatDogError:
        if await self.redis.exists(Keys.tombstone(job_id)):
            return JobExpiredError(f"job {job_id} has expired and its results were deleted")
        return JobNotFoundError(f"no job with id {job_id}")

    async def job(self, job_id: str) -> JobRecord:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(Keys.job(job_id))
        pipe.pttl(Keys.job(job_id))
        raw, ttl = await pipe.execute()
        if not raw:
            raise await self._missing(job_id)
        return JobRecord.from_hash(job_id, raw, ttl)

    async def page(self, job_id: str, offset: int, limit: int) -> JobPage:
        """The job and its items offset..offset+limit-1, read in one transaction."""
        indices = [str(i) for i in range(offset, offset + limit)]
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(Keys.job(job_id))
        pipe.pttl(Keys.job(job_id))
        pipe.lrange(Keys.names(job_id), offset, offset + limit - 1)
        pipe.hmget(Keys.results(job_id), indices)
        raw, ttl, names, results = await pipe.execute()
        if not raw:
            raise await self._missing(job_id)
        record = JobRecord.from_hash(job_id, raw, ttl)
        names = [_text(n) or "" for n in names]
        items = [
            ItemResult.from_json(offset + i, value) if value is not None else None
            for i, value in enumerate(results[: len(names)])
        ]
        return JobPage(record, offset, limit, names, items)

    async def cancel(self, job_id: str) -> tuple[JobRecord, bool]:
        """Cancel a queued or running job. Returns the job and whether this call cancelled it;
        raises JobFinishedError for a job that already succeeded or failed."""
        before, changed = await self._cancel(keys=[Keys.job(job_id)], args=[repr(time.time())])
        before = _text(before)
        if not before:
            raise await self._missing(job_id)
        record = await self.job(job_id)
        if not changed and record.status is not JobStatus.CANCELLED:
            raise JobFinishedError(f"job {job_id} already {record.status.value}")
        return record, bool(changed)

    # idempotency
    async def idempotent_job(self, key: str) -> str | None:
        return _text(await self.redis.get(Keys.idempotency(key)))

    async def reserve_idempotency(self, key: str, job_id: str) -> bool:
        return bool(await self.redis.set(Keys.idempotency(key), job_id, nx=True, ex=self.job_ttl_s))

    async def release_idempotency(self, key: str, job_id: str) -> None:
        await self._release(keys=[Keys.idempotency(key)], args=[job_id])

    async def job_exists(self, job_id: str) -> bool:
        return bool(await self.redis.exists(Keys.job(job_id)))

    # /predict hand-off
    async def put_predict_image(self, pid: str, data: bytes, ttl_s: int) -> None:
        await self.redis.set(Keys.predict_image(pid), data, ex=ttl_s)

    async def await_predict_reply(self, pid: str, timeout_s: float) -> dict[str, Any] | None:
        """Wait without blocking the event loop for the worker's answer (BLPOP)."""
        popped = await self.redis.blpop([Keys.predict_reply(pid)], timeout=timeout_s)
        if popped is None:
            return None
        reply: dict[str, Any] = json.loads(popped[1])
        return reply

    async def abandon_predict(self, pid: str) -> None:
        # The worker skips a prediction whose image is gone.
        await self.redis.unlink(Keys.predict_image(pid), Keys.predict_reply(pid))
