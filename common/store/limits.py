"""Per-key limits, kept in Redis so that every gateway replica enforces the same numbers:
the jobs and upload bytes a key holds at once. (Its request rate is a token bucket taken in
the same round trip as the key's lookup: `common.store.api_keys.admit`.)

A job holds its place from the moment its upload starts until its end is reported (the
job-end task releases it); the scripts also drop places whose job has ended or expired, so a
lost release costs nothing for long.
"""

from dataclasses import dataclass
from typing import Any

from common.store import keys
from common.store.jobs import LUA_ENDED
from common.store.ops import Op, script, text

# KEYS: owner jobs set, owner bytes hash. ARGV: job key prefix, job id, bytes, max jobs,
# max bytes. Returns 'ok', 'too_many_jobs' or 'byte_budget' (with the bytes already held).
_RESERVE = script(f"""
for _, job in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local status = redis.call('HGET', ARGV[1] .. job, 'status')
  if (not status) or {LUA_ENDED} then
    redis.call('SREM', KEYS[1], job)
    redis.call('HDEL', KEYS[2], job)
  end
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[4]) then return {{'too_many_jobs', 0}} end
local held = 0
for _, n in ipairs(redis.call('HVALS', KEYS[2])) do held = held + tonumber(n) end
if held + tonumber(ARGV[3]) > tonumber(ARGV[5]) then return {{'byte_budget', held}} end
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return {{'ok', held}}
""")


@dataclass(frozen=True)
class Limits:
    rate_per_s: float
    burst: int
    active_jobs: int
    stored_bytes: int


@dataclass(frozen=True)
class Reservation:
    verdict: str  # ok | too_many_jobs | byte_budget
    held_bytes: int  # what the key's other jobs held when it was asked

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


def reserve_job(owner: str, job_id: str, nbytes: int, limits: Limits) -> Op[Reservation]:
    """Hold a place and `nbytes` of upload for a new job, if the key's limits allow."""
    args = [keys.job(""), job_id, nbytes, limits.active_jobs, limits.stored_bytes]
    return Op(
        lambda client: _RESERVE(client, [keys.owner_jobs(owner), keys.owner_bytes(owner)], args),
        lambda reply: Reservation(text(reply[0]) or "", int(reply[1])),
    )


def settle_bytes(owner: str, job_id: str, nbytes: int) -> Op[Any]:
    """The bytes a job's upload really holds, once it is stored."""
    return Op(lambda client: client.hset(keys.owner_bytes(owner), job_id, nbytes))


def release_job(owner: str, job_id: str) -> Op[Any]:
    def send(client: Any) -> Any:
        pipe = client.pipeline(transaction=True)
        pipe.srem(keys.owner_jobs(owner), job_id)
        pipe.hdel(keys.owner_bytes(owner), job_id)
        return pipe.execute()

    return Op(send)
