"""API keys: who may call the service, under which name (the shelter) and limits.

A key is shown once, when it is made; Redis keeps only its SHA-256 digest (a key is 32 random
bytes, so a plain digest cannot be reversed or guessed). Records never expire: a key ends by
its `expires_at` or by being revoked, and both stay visible in `catdog keys list`.

    catdog:apikey:{digest}   hash   id, name, digest, created_at, expires_at, revoked_at, limits
    catdog:apikey-ids        hash   id (the digest's first 12 hex digits) -> digest
"""

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from common.store import keys
from common.store.ops import Op, script, text

SECRET_PREFIX = "cdk_"
ID_LENGTH = 12


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    digest: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    # Limits of this key; None: the service's defaults (settings).
    rate_limit_rps: float | None = None
    rate_limit_burst: int | None = None
    max_active_jobs: int | None = None
    max_stored_bytes: int | None = None

    @classmethod
    def issue(cls, name: str, secret: str, **extra: Any) -> "ApiKey":
        d = digest(secret)
        return cls(key_id=d[:ID_LENGTH], name=name, digest=d, created_at=time.time(), **extra)

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.digest, digest(secret))  # constant time

    def refusal(self, now: float) -> str | None:
        """Why this key may not be used now, or None."""
        if self.revoked_at is not None:
            return f"the API key {self.key_id} was revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return f"the API key {self.key_id} has expired"
        return None

    def to_hash(self) -> dict[str, str]:
        return {k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_hash(cls, raw: dict[Any, Any]) -> "ApiKey":
        data: dict[str, Any] = {str(text(k)): json.loads(v) for k, v in raw.items()}
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


# KEYS: ids hash. ARGV: record key prefix. Returns every record as a flat field/value list.
_ALL = script("""
local out = {}
for _, digest in ipairs(redis.call('HVALS', KEYS[1])) do
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. digest)
end
return out
""")

# KEYS: ids hash. ARGV: id, record key prefix, revoked_at (JSON). 1 if the key exists.
_REVOKE = script("""
local digest = redis.call('HGET', KEYS[1], ARGV[1])
if not digest then return 0 end
redis.call('HSET', ARGV[2] .. digest, 'revoked_at', ARGV[3])
return 1
""")


# KEYS: the key's record. ARGV: default rate per second, default burst, bucket key prefix.
# Looks the key up and takes one token from its bucket (the key's own limits, else the
# defaults), in one round trip. Returns {} for an unknown key, else {wait ms, record...}.
_ADMIT = script("""
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return {} end
local h = {}
for i = 1, #record, 2 do h[record[i]] = record[i + 1] end
local rate = tonumber(h['rate_limit_rps']) or tonumber(ARGV[1])
local burst = tonumber(h['rate_limit_burst']) or tonumber(ARGV[2])
local bucket = ARGV[3] .. cjson.decode(h['key_id']) .. ':bucket'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens = tonumber(redis.call('HGET', bucket, 'tokens') or burst)
local last = tonumber(redis.call('HGET', bucket, 'at') or now)
tokens = math.min(burst, tokens + (now - last) * rate / 1000)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', bucket, 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', bucket, math.ceil(burst * 1000 / rate) + 1000)
local reply = {wait}
for _, v in ipairs(record) do reply[#reply + 1] = v end
return reply
""")


@dataclass(frozen=True)
class Admission:
    key: ApiKey | None  # None: no key has this secret
    wait_s: float  # 0 when the call may go ahead, else how long until the bucket has a token


def admit(secret: str, rate_per_s: float, burst: int) -> Op[Admission]:
    """Find the key for `secret` and take one token from its request bucket."""
    args = [rate_per_s, burst, keys.OWNER_PREFIX]

    def parse(reply: Any) -> Admission:
        if not reply:
            return Admission(None, 0.0)
        wait_ms, *flat = reply
        key = ApiKey.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
        return Admission(key if key.matches(secret) else None, int(wait_ms) / 1000)

    return Op(lambda client: _ADMIT(client, [keys.api_key(digest(secret))], args), parse)


def save(key: ApiKey) -> Op[Any]:
    def send(client: Any) -> Any:
        pipe = client.pipeline(transaction=True)
        pipe.hset(keys.api_key(key.digest), mapping=key.to_hash())
        pipe.hset(keys.API_KEY_IDS, key.key_id, key.digest)
        return pipe.execute()

    return Op(send)


def every() -> Op[list[ApiKey]]:
    def parse(records: Any) -> list[ApiKey]:
        found = [ApiKey.from_hash(dict(zip(r[::2], r[1::2], strict=True))) for r in records if r]
        return sorted(found, key=lambda k: k.created_at)

    return Op(lambda client: _ALL(client, [keys.API_KEY_IDS], [keys.API_KEY_PREFIX]), parse)


def revoke(key_id: str) -> Op[bool]:
    when = json.dumps(time.time())
    return Op(
        lambda client: _REVOKE(client, [keys.API_KEY_IDS], [key_id, keys.API_KEY_PREFIX, when]),
        bool,
    )
