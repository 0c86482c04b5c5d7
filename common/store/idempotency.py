"""Idempotency-Key reservations, scoped by API key: a key names the job it created for the
job's lifetime.

A key is first reserved for a short while (`idempotency_pending_ttl_s`), while its upload is
received, and bound for the job's lifetime only once the job exists (`commit`). A gateway
killed mid-upload so leaves a reservation that lapses by itself, and the client's retry with
the same key goes through instead of answering 409 for a day."""

from typing import Any

from common.store import keys
from common.store.ops import Op, script, text

# KEYS: reservation. ARGV: job id. Deletes the reservation only if it still names this job.
_RELEASE = script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")


def lookup(owner: str, key: str) -> Op[str | None]:
    return Op(lambda client: client.get(keys.idempotency(owner, key)), text)


def reserve(owner: str, key: str, job_id: str, ttl_s: int) -> Op[bool]:
    name = keys.idempotency(owner, key)
    return Op(lambda client: client.set(name, job_id, nx=True, ex=ttl_s), bool)


# KEYS: reservation. ARGV: job id, ttl. Extends the reservation only if it still names this job.
_COMMIT = script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
""")


def commit(owner: str, key: str, job_id: str, ttl_s: int) -> Op[bool]:
    """Bind the key to its job for `ttl_s` (the job's lifetime); False when the reservation
    had lapsed or names another job."""
    return Op(lambda client: _COMMIT(client, [keys.idempotency(owner, key)], [job_id, ttl_s]), bool)


def release(owner: str, key: str, job_id: str) -> Op[Any]:
    return Op(lambda client: _RELEASE(client, [keys.idempotency(owner, key)], [job_id]))
