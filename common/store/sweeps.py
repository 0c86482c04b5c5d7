"""What the sweeper reads and writes: its lease, the watched jobs and what a stalled job
needs to be driven again (worker.sweeper holds the rules).

Every job is watched from its creation (`catdog:jobs:watched`, scored by its last sign of
life on Redis's clock: a chunk starting, an item finishing, its end being reported) until
its end has been fully reported (`jobs.settle`).
"""

import json
from dataclasses import dataclass
from typing import Any

from common.store import keys
from common.store.jobs import JobRecord
from common.store.ops import Op, script, text

# KEYS: lease. ARGV: holder, ttl ms. Takes the lease, or renews it if this holder has it.
_LEASE = script("""
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
""")

# KEYS: meta. Counts one more re-drive of a job that still exists; its new count, or 0.
_COUNT_REDRIVE = script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], 'redrives', 1)
""")


def lease(holder: str, ttl_s: float) -> Op[bool]:
    """True while `holder` may sweep: one sweeper at a time, and another takes over within
    `ttl_s` of this one dying."""
    return Op(lambda client: _LEASE(client, [keys.SWEEPER], [holder, int(ttl_s * 1000)]), bool)


@dataclass(frozen=True)
class Watched:
    now: float  # Redis's clock
    jobs: list[tuple[str, float]]  # job id, last sign of life (or when the next one is due)


def watched() -> Op[Watched]:
    def send(client: Any) -> Any:
        pipe = client.pipeline(transaction=False)
        pipe.time()
        pipe.zrange(keys.WATCHED_JOBS, 0, -1, withscores=True)
        return pipe.execute()

    def parse(reply: Any) -> Watched:
        (seconds, micros), members = reply
        jobs = [(text(job) or "", float(score)) for job, score in members]
        return Watched(seconds + micros / 1e6, jobs)

    return Op(send, parse)


@dataclass(frozen=True)
class JobState:
    """A watched job as the sweeper sees it; `record` None: the job expired."""

    record: JobRecord | None
    holders: dict[int, str]  # chunk -> worker process running it
    queued_messages: int  # waiting in the bulk queue (any job's)


def state(job_id: str, bulk_queue: str) -> Op[JobState]:
    def send(client: Any) -> Any:
        pipe = client.pipeline(transaction=True)
        pipe.hgetall(keys.job(job_id))
        pipe.pttl(keys.job(job_id))
        pipe.hgetall(keys.holders(job_id))
        pipe.llen(bulk_queue)
        return pipe.execute()

    def parse(reply: Any) -> JobState:
        raw, ttl, holders, queued = reply
        record = JobRecord.from_hash(job_id, raw, ttl) if raw else None
        held = {int(text(k) or 0): text(v) or "" for k, v in holders.items()}
        return JobState(record, held, int(queued))

    return Op(send, parse)


def plan(job_id: str) -> Op[dict[int, list[int]]]:
    """Each chunk's item indices, as first published."""

    def parse(raw: Any) -> dict[int, list[int]]:
        return {int(text(k) or 0): [int(i) for i in json.loads(v)] for k, v in raw.items()}

    return Op(lambda client: client.hgetall(keys.plan(job_id)), parse)


def count_redrive(job_id: str) -> Op[int]:
    return Op(lambda client: _COUNT_REDRIVE(client, [keys.job(job_id)], []), int)
