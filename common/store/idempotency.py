"""Idempotency-Key reservations: a key names the job it created for the job's lifetime."""

from typing import Any

from common.store import keys
from common.store.ops import Op, script, text

# KEYS: reservation. ARGV: job id. Deletes the reservation only if it still names this job.
_RELEASE = script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")


def lookup(key: str) -> Op[str | None]:
    return Op(lambda client: client.get(keys.idempotency(key)), text)


def reserve(key: str, job_id: str, ttl_s: int) -> Op[bool]:
    return Op(lambda client: client.set(keys.idempotency(key), job_id, nx=True, ex=ttl_s), bool)


def release(key: str, job_id: str) -> Op[Any]:
    return Op(lambda client: _RELEASE(client, [keys.idempotency(key)], [job_id]))
