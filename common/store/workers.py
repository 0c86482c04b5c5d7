"""The registry of model-owning worker processes, and the one readiness rule.

Each process writes its `Heartbeat` under its own key with a TTL and its expiry in a sorted
set, both on Redis's clock, so readers never trust a stale beat and clocks of other hosts do
not matter.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common.store import keys
from common.store.ops import Op, script
from common.wire import Heartbeat

# KEYS: workers zset, worker key. ARGV: worker id, heartbeat json, ttl ms.
_BEAT = script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]) / 1000, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return 1
""")

# KEYS: workers zset. ARGV: worker key prefix. Returns the live heartbeats (JSON).
_LIVE = script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
if #ids == 0 then return {} end
local names = {}
for i, id in ipairs(ids) do names[i] = ARGV[1] .. id end
return redis.call('MGET', unpack(names))
""")


def beat(heartbeat: Heartbeat, ttl_s: float) -> Op[Any]:
    return Op(
        lambda client: _BEAT(
            client,
            [keys.WORKERS, keys.worker(heartbeat.worker_id)],
            [heartbeat.worker_id, heartbeat.to_json(), int(ttl_s * 1000)],
        )
    )


def forget(worker_id: str) -> Op[Any]:
    def send(client: Any) -> Any:
        pipe = client.pipeline()
        pipe.zrem(keys.WORKERS, worker_id)
        pipe.delete(keys.worker(worker_id))
        return pipe.execute()

    return Op(send)


_RESERVED = ":reserved"


def host_holder(hostname: str) -> str:
    """The holder of a chunk whose message the worker `hostname` took but none of its
    processes has started (it waits in the host's prefetch, `jobs.reserve_chunk`)."""
    return hostname + _RESERVED


def is_host_holder(holder: str) -> bool:
    return holder.endswith(_RESERVED)


def live_holders(heartbeats: Sequence[Heartbeat]) -> set[str]:
    """Who may hold a chunk and is alive: each beating process, and each host with a
    beating process (a host's waiting messages die with it, not with one of its
    processes: Celery hands them to the process that replaces it)."""
    return {hb.worker_id for hb in heartbeats} | {host_holder(hb.hostname) for hb in heartbeats}


def live() -> Op[list[Heartbeat]]:
    return Op(
        lambda client: _LIVE(client, [keys.WORKERS], [keys.WORKER_PREFIX]),
        lambda raw: [Heartbeat.from_json(value) for value in raw if value],
    )


@dataclass(frozen=True)
class Readiness:
    ok: bool
    detail: str


def readiness(heartbeats: Sequence[Heartbeat], queues: Sequence[str]) -> Readiness:
    """Ready when every queue has at least one live worker process with a loaded model."""
    missing = [q for q in queues if not any(hb.serves(q) for hb in heartbeats)]
    if not missing:
        return Readiness(True, "Redis answers and every queue has a worker with a model")
    detail = "no worker with a loaded model serves queue " + ", ".join(repr(q) for q in missing)
    if loading := [hb for hb in heartbeats if not hb.ready]:
        states = ", ".join(
            f"{hb.worker_id} {hb.state}" + (f" ({hb.error})" if hb.error else "") for hb in loading
        )
        detail += f"; not ready: {states}"
    return Readiness(False, detail)
