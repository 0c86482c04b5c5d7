"""Jobs: their records, their items' images and results, as ops for either face.

Every job key carries the job's TTL. Result writes go through one Lua script that stores an
index only if it has no result yet, derives the counts from those first writes, refuses
every write once the job has ended, and moves the job to its final status exactly once: a
redelivered chunk can never duplicate an item, and nothing finishes after a cancel.
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.typing import EncodableT

from common.errors import JobExpiredError, JobFinishedError, JobNotFoundError
from common.store import keys
from common.store.ops import Op, script, text
from common.wire import TERMINAL, ItemResult, JobStatus, JobSummary

# Deleting many keys at once blocks Redis; this many per UNLINK keeps each call short.
UNLINK_BATCH = 500


def _time(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


def _float(value: Any) -> float | None:
    value = text(value)
    return float(value) if value else None


@dataclass(frozen=True)
class JobRecord:
    """The job's hash, read at one moment."""

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
    owner: str = ""  # the API key that created it ("" when auth is off)
    redrives: int = 0  # times the sweeper drove its stalled chunks again
    end_reported: bool = False  # its end was counted and logged (`claim_end`)
    fingerprint: str = ""  # of its upload; "" for a job created before fingerprints

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    def summary(self) -> JobSummary:
        return JobSummary(
            job_id=self.job_id,
            status=self.status,
            total=self.total,
            done=self.done,
            failed=self.failed,
            pending=self.pending,
            created_at=datetime.fromtimestamp(self.created_at, UTC),
            started_at=_time(self.started_at),
            finished_at=_time(self.finished_at),
            cancelled_at=_time(self.cancelled_at),
            expires_at=_time(self.expires_at),
            callback_status=self.callback_status,  # type: ignore[arg-type]
        )

    @classmethod
    def from_hash(cls, job_id: str, raw: dict[Any, Any], ttl_ms: int | None = None) -> "JobRecord":
        data = {text(k): v for k, v in raw.items()}
        expires_at = time.time() + ttl_ms / 1000 if ttl_ms and ttl_ms > 0 else None
        return cls(
            job_id=job_id,
            status=JobStatus(str(text(data["status"]))),
            total=int(data["total"]),
            done=int(data.get("done", 0)),
            failed=int(data.get("failed", 0)),
            created_at=float(data["created_at"]),
            started_at=_float(data.get("started_at")),
            finished_at=_float(data.get("finished_at")),
            cancelled_at=_float(data.get("cancelled_at")),
            expires_at=expires_at,
            callback_url=text(data.get("callback_url")) or None,
            callback_status=text(data.get("callback_status")) or None,
            request_id=text(data.get("request_id")) or None,
            chunks=int(data.get("chunks", 0)),
            owner=text(data.get("owner")) or "",
            redrives=int(data.get("redrives", 0)),
            end_reported=bool(data.get("end_reported")),
            fingerprint=text(data.get("fingerprint")) or "",
        )


@dataclass(frozen=True)
class JobPage:
    record: JobRecord
    offset: int
    limit: int
    names: list[str]
    results: list[ItemResult | None]  # None: not finished yet


@dataclass(frozen=True)
class NewJob:
    job_id: str
    names: list[str]
    rejected: list[ItemResult]  # items refused at upload (for example over the size limit)
    chunks: int
    callback_url: str | None
    request_id: str | None
    owner: str = ""
    # Each chunk's item indices, as they are published: the sweeper re-drives from it.
    plan: list[list[int]] = field(default_factory=list)
    fingerprint: str = ""  # of the upload (gateway.job_uploads.UploadFingerprint)


@dataclass(frozen=True)
class Completion:
    accepted: bool  # False: the job is gone or already ended; nothing was written
    written: int  # indices written for the first time
    finished: bool  # this write moved the job to its final status


# --- Lua scripts -------------------------------------------------------------------------

# A Lua condition: the local `status` is one of TERMINAL. Written from the enum, so it is
# spelled once; the limits scripts use it too.
LUA_ENDED = " or ".join(f"status == '{s.value}'" for s in sorted(TERMINAL))


# A Lua statement: the job (ARGV job id at `LUA_JOB_ID`) showed a sign of life now, on
# Redis's clock; XX, so a job whose end was settled is not watched again.
def _lua_touch(watched_key: str, job_id_arg: str) -> str:
    return (
        "redis.call('ZADD', " + watched_key + ", 'XX', "
        "tonumber(redis.call('TIME')[1]), " + job_id_arg + ")"
    )


# KEYS: watched. ARGV: job id. Starts watching a new job (create runs it in its transaction).
_WATCH = """
redis.call('ZADD', KEYS[1], tonumber(redis.call('TIME')[1]), ARGV[1])
return 1
"""

# KEYS: meta, results, watched. ARGV: now, job id, then (index, ok 1|0, json) per item.
_COMPLETE = script(f"""
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {{0, 0, 0}} end
if {LUA_ENDED} then return {{0, 0, 0}} end
if status == '{JobStatus.QUEUED}' then
  redis.call('HSET', KEYS[1], 'status', '{JobStatus.RUNNING}', 'started_at', ARGV[1])
end
{_lua_touch("KEYS[3]", "ARGV[2]")}
local written = 0
for i = 3, #ARGV, 3 do
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
  local final = '{JobStatus.SUCCEEDED}'
  if done == 0 then final = '{JobStatus.FAILED}' end
  redis.call('HSET', KEYS[1], 'status', final, 'finished_at', ARGV[1])
  return {{1, written, 1}}
end
return {{1, written, 0}}
""")

# KEYS: meta, deliveries, holders, watched. ARGV: now, chunk, holder, job id.
# Returns {status or '', deliveries, owner}.
_START_CHUNK = script(f"""
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {{'', 0, ''}} end
if status == '{JobStatus.QUEUED}' then
  redis.call('HSET', KEYS[1], 'status', '{JobStatus.RUNNING}', 'started_at', ARGV[1])
  status = '{JobStatus.RUNNING}'
end
local n = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if not ({LUA_ENDED}) then
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
  {_lua_touch("KEYS[4]", "ARGV[4]")}
end
return {{status, n, redis.call('HGET', KEYS[1], 'owner') or ''}}
""")

# KEYS: meta, holders. ARGV: chunk, holder. Marks the chunk held by `holder` unless the job
# has ended or someone already holds it. Returns 1 if it did.
_RESERVE_CHUNK = script(f"""
local status = redis.call('HGET', KEYS[1], 'status')
if not status or {LUA_ENDED} then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
""")

# KEYS: holders. ARGV: chunk, holders... Lets go of the chunk if one of these still has it.
_RELEASE_CHUNK = script("""
local holder = redis.call('HGET', KEYS[1], ARGV[1])
for i = 2, #ARGV do
  if holder == ARGV[i] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
end
return 0
""")

# KEYS: watched. ARGV: job id, seconds. News of the job is due that much later (a callback
# retry's countdown), so the sweeper does not report it again meanwhile.
_EXPECT = script("""
local due = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[2])
return redis.call('ZADD', KEYS[1], 'XX', due, ARGV[1])
""")

# KEYS: meta, attempts. ARGV: indices. Returns each item's attempt number.
_COUNT_ATTEMPTS = script("""
local counts = {}
for i = 1, #ARGV do counts[i] = redis.call('HINCRBY', KEYS[2], ARGV[i], 1) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) else redis.call('EXPIRE', KEYS[2], 60) end
return counts
""")

# KEYS: meta, tombstone. ARGV: now, owner. Another owner's job is treated as absent.
# Returns {status before ('' when there is no job), changed 1|0, tombstone owner, pttl, hash...}.
_CANCEL = script(f"""
local status = redis.call('HGET', KEYS[1], 'status')
if (not status) or (redis.call('HGET', KEYS[1], 'owner') or '') ~= ARGV[2] then
  return {{'', 0, redis.call('GET', KEYS[2]) or false, 0}}
end
local changed = 0
if status == '{JobStatus.QUEUED}' or status == '{JobStatus.RUNNING}' then
  redis.call('HSET', KEYS[1], 'status', '{JobStatus.CANCELLED}', 'cancelled_at', ARGV[1],
             'finished_at', ARGV[1])
  changed = 1
end
local reply = {{status, changed, ARGV[2], redis.call('PTTL', KEYS[1])}}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do reply[#reply + 1] = v end
return reply
""")

# KEYS: meta. ARGV: field, value. Sets the field only on a job that still exists (an HSET on
# an expired job would recreate its hash without a TTL); returns 1 if set.
_SET_IF_JOB = script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
""")

# KEYS: meta. Marks the job's end as reported; 1 the first time only (and only if it ended).
_CLAIM_END = script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], 'end_reported', '1')
""")


# --- reads -------------------------------------------------------------------------------


def _missing(job_id: str, tombstone: Any, owner: str) -> Exception:
    # The tombstone holds the job's owner: only it learns that the job existed.
    if tombstone is not None and text(tombstone) == owner:
        return JobExpiredError(f"job {job_id} has expired and its results were deleted")
    return JobNotFoundError(f"no job with id {job_id}")


def _read_commands(pipe: Any, job_id: str) -> None:
    pipe.hgetall(keys.job(job_id))
    pipe.pttl(keys.job(job_id))
    pipe.get(keys.tombstone(job_id))


def _record(job_id: str, owner: str | None, raw: Any, ttl: Any, tombstone: Any) -> JobRecord:
    if raw:
        record = JobRecord.from_hash(job_id, raw, ttl)
        if owner is None or record.owner == owner:
            return record
    raise _missing(job_id, tombstone, owner or "")


def read(job_id: str, owner: str | None = None) -> Op[JobRecord]:
    """The job; raises JobNotFoundError, or JobExpiredError while its tombstone lasts. With
    an `owner`, another owner's job is not found (its existence is not revealed); None
    reads any job (the workers)."""

    def send(client: Any) -> Any:
        pipe = client.pipeline(transaction=True)
        _read_commands(pipe, job_id)
        return pipe.execute()

    return Op(send, lambda reply: _record(job_id, owner, *reply))


def page(job_id: str, offset: int, limit: int, owner: str | None = None) -> Op[JobPage]:
    """The job and its items offset..offset+limit-1, read in one transaction."""

    def send(client: Any) -> Any:
        pipe = client.pipeline(transaction=True)
        _read_commands(pipe, job_id)
        pipe.lrange(keys.names(job_id), offset, offset + limit - 1)
        pipe.hmget(keys.results(job_id), [str(i) for i in range(offset, offset + limit)])
        return pipe.execute()

    def parse(reply: Any) -> JobPage:
        raw, ttl, tombstone, names, results = reply
        record = _record(job_id, owner, raw, ttl, tombstone)
        names = [text(n) or "" for n in names]
        items = [
            ItemResult.stored(offset + i, value) if value is not None else None
            for i, value in enumerate(results[: len(names)])
        ]
        return JobPage(record, offset, limit, names, items)

    return Op(send, parse)


def status(job_id: str) -> Op[JobStatus | None]:
    def parse(value: Any) -> JobStatus | None:
        name = text(value)
        return JobStatus(name) if name else None

    return Op(lambda client: client.hget(keys.job(job_id), "status"), parse)


def exists(job_id: str) -> Op[bool]:
    return Op(lambda client: client.exists(keys.job(job_id)), bool)


def unfinished(job_id: str, indices: Sequence[int]) -> Op[list[int]]:
    """The indices among `indices` that have no result yet."""

    def send(client: Any) -> Any:
        return client.hmget(keys.results(job_id), [str(i) for i in indices]) if indices else []

    return Op(send, lambda got: [i for i, v in zip(indices, got, strict=True) if v is None])


def images(job_id: str, indices: Sequence[int]) -> Op[list[bytes | None]]:
    def send(client: Any) -> Any:
        return client.mget([keys.image(job_id, i) for i in indices]) if indices else []

    return Op(send, lambda values: [v if isinstance(v, bytes) else None for v in values])


# --- writes ------------------------------------------------------------------------------


def create(job: NewJob, ttl_s: int, tombstone_ttl_s: int) -> Op[JobRecord]:
    """Write the job's record and names (and the results of items refused at upload) at
    once; a job whose every file was refused is created already failed."""
    now = time.time()
    total, failed = len(job.names), len(job.rejected)
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
        "owner": job.owner,
        "fingerprint": job.fingerprint,
    }
    if status is JobStatus.FAILED:
        meta["finished_at"] = repr(now)

    def send(client: Any) -> Any:
        pipe = client.pipeline(transaction=True)
        pipe.hset(keys.job(job.job_id), mapping=meta)
        pipe.expire(keys.job(job.job_id), ttl_s)
        pipe.rpush(keys.names(job.job_id), *job.names)
        pipe.expire(keys.names(job.job_id), ttl_s)
        if job.rejected:
            rejected = {str(r.index): r.to_json() for r in job.rejected}
            pipe.hset(keys.results(job.job_id), mapping=rejected)
            pipe.expire(keys.results(job.job_id), ttl_s)
        if job.plan:
            plan = {str(n): json.dumps(indices) for n, indices in enumerate(job.plan)}
            pipe.hset(keys.plan(job.job_id), mapping=plan)
            pipe.expire(keys.plan(job.job_id), ttl_s)
        pipe.set(keys.tombstone(job.job_id), job.owner, ex=ttl_s + tombstone_ttl_s)
        pipe.eval(_WATCH, 1, keys.WATCHED_JOBS, job.job_id)
        return pipe.execute()

    record = JobRecord.from_hash(job.job_id, meta, ttl_s * 1000)
    return Op(send, lambda _: record)


def store_image(job_id: str, index: int, data: bytes, ttl_s: int) -> Op[Any]:
    return store_images(job_id, [(index, data)], ttl_s)


def store_images(job_id: str, images: Sequence[tuple[int, bytes]], ttl_s: int) -> Op[Any]:
    """Store (index, bytes) uploads in one round trip (a pipeline; no transaction: a failed
    upload deletes what it stored, `discard_upload`)."""

    def send(client: Any) -> Any:
        pipe = client.pipeline(transaction=False)
        for index, data in images:
            pipe.set(keys.image(job_id, index), data, ex=ttl_s)
        return pipe.execute()

    return Op(send)


def _unlink_all(client: Any, names: list[str]) -> Any:
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(names), UNLINK_BATCH):
        pipe.unlink(*names[start : start + UNLINK_BATCH])
    return pipe.execute()


def drop_images(job_id: str, indices: Sequence[int]) -> Op[Any]:
    """Delete the images of these items (they have results, or the job ended)."""
    return Op(lambda client: _unlink_all(client, [keys.image(job_id, i) for i in indices]))


def discard_upload(job_id: str, count: int) -> Op[Any]:
    return drop_images(job_id, range(count))


@dataclass(frozen=True)
class ChunkStart:
    status: JobStatus | None  # None: the job is gone
    deliveries: int  # how often this chunk was delivered, this time included
    owner: str


def start_chunk(job_id: str, chunk: int, holder: str = "") -> Op[ChunkStart]:
    """Mark the job running and the chunk held by `holder` (a worker process id, whose
    heartbeat the sweeper watches); the job's status, its owner and how often this chunk
    was delivered."""

    def send(client: Any) -> Any:
        names = [keys.job(job_id), keys.deliveries(job_id), keys.holders(job_id)]
        args = [repr(time.time()), chunk, holder, job_id]
        return _START_CHUNK(client, [*names, keys.WATCHED_JOBS], args)

    def parse(reply: Any) -> ChunkStart:
        name, deliveries, owner = (text(reply[0]), int(reply[1]), text(reply[2]) or "")
        return ChunkStart(JobStatus(name) if name else None, deliveries, owner)

    return Op(send, parse)


def count_attempts(job_id: str, indices: Sequence[int]) -> Op[list[int]]:
    """Record that a worker starts on these items; each item's attempt number."""

    def send(client: Any) -> Any:
        if not indices:
            return []
        return _COUNT_ATTEMPTS(
            client, [keys.job(job_id), keys.attempts(job_id)], [str(i) for i in indices]
        )

    return Op(send, lambda counts: [int(n) for n in counts])


def reserve_chunk(job_id: str, chunk: int, holder: str) -> Op[bool]:
    """A worker host took the chunk's message and keeps it until a pool process is free
    (Celery's prefetch): the chunk is held by `holder` (`workers.host_holder`) until a
    process starts it (`start_chunk` then names the process). A chunk some process holds
    already keeps its holder. True if the mark was made."""
    names = [keys.job(job_id), keys.holders(job_id)]
    return Op(lambda client: _RESERVE_CHUNK(client, names, [chunk, holder]), bool)


def release_chunk(job_id: str, chunk: int, *holders: str) -> Op[bool]:
    """The chunk's run ended, however it ended: none of `holders` has it any more."""
    return Op(
        lambda client: _RELEASE_CHUNK(client, [keys.holders(job_id)], [chunk, *holders]), bool
    )


def complete(job_id: str, results: Sequence[ItemResult]) -> Op[Completion]:
    args = [repr(time.time()), job_id]
    for item in results:
        args += [str(item.index), "1" if item.ok else "0", item.to_json()]

    def parse(reply: Any) -> Completion:
        accepted, written, finished = reply
        return Completion(bool(accepted), int(written), bool(finished))

    return Op(
        lambda client: _COMPLETE(
            client, [keys.job(job_id), keys.results(job_id), keys.WATCHED_JOBS], args
        ),
        parse,
    )


def cancel(job_id: str, owner: str) -> Op[tuple[JobRecord, bool]]:
    """Cancel a queued or running job of `owner`: the job and whether this call cancelled
    it. Raises JobFinishedError for a job that already succeeded or failed."""

    def send(client: Any) -> Any:
        args = [repr(time.time()), owner]
        return _CANCEL(client, [keys.job(job_id), keys.tombstone(job_id)], args)

    def parse(reply: Any) -> tuple[JobRecord, bool]:
        before, changed, tombstone, ttl, *flat = reply
        if not text(before):
            raise _missing(job_id, tombstone, owner)
        record = JobRecord.from_hash(job_id, dict(zip(flat[::2], flat[1::2], strict=True)), ttl)
        if not changed and record.status is not JobStatus.CANCELLED:
            raise JobFinishedError(f"job {job_id} already {record.status.value}")
        return record, bool(changed)

    return Op(send, parse)


def set_callback_status(job_id: str, status: str) -> Op[bool]:
    return Op(
        lambda client: _SET_IF_JOB(client, [keys.job(job_id)], ["callback_status", status]), bool
    )


def claim_end(job_id: str) -> Op[bool]:
    """True exactly once per job: whoever gets it reports the job's end (metrics, log line),
    so a redelivered report counts nothing twice."""
    return Op(lambda client: _CLAIM_END(client, [keys.job(job_id)], []), bool)


def expect_news(job_id: str, within_s: float) -> Op[Any]:
    """The job's next sign of life is due `within_s` from now (Redis's clock)."""
    return Op(lambda client: _EXPECT(client, [keys.WATCHED_JOBS], [job_id, within_s]))


def settle(job_id: str) -> Op[Any]:
    """The job's end is fully reported (counted, callback delivered or given up): the
    sweeper stops watching it."""
    return Op(lambda client: client.zrem(keys.WATCHED_JOBS, job_id))
