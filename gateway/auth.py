"""Who is calling: the API key on a request, checked against Redis, and its request rate.

A key comes as `X-API-Key: <key>` or `Authorization: Bearer <key>`. Keys are looked up by
their SHA-256 digest and compared in constant time (`common.store.api_keys`); the secret is
never logged, stored or put in a metric label. With `CATDOG_AUTH=off` every request is the
one anonymous caller, without per-key limits (the global queue guard still holds).
"""

import math
import time
from dataclasses import dataclass

from starlette.requests import Request

from common.errors import RateLimitedError, UnauthorizedError
from common.settings import Settings
from common.store import api_keys
from common.store.api_keys import ApiKey
from common.store.limits import Limits
from gateway.services import Services

API_KEY_HEADER = "x-api-key"
BEARER = "bearer "


@dataclass(frozen=True)
class Caller:
    key_id: str  # "" for the anonymous caller (auth off)
    name: str
    limits: Limits | None  # None: no per-key limits


ANONYMOUS = Caller(key_id="", name="anonymous", limits=None)


def limits_of(key: ApiKey, settings: Settings) -> Limits:
    """The key's own limits where it has them, else the service's defaults."""
    return Limits(
        rate_per_s=key.rate_limit_rps or settings.rate_limit_rps,
        burst=key.rate_limit_burst or settings.rate_limit_burst,
        active_jobs=key.max_active_jobs or settings.max_active_jobs_per_key,
        stored_bytes=key.max_stored_bytes or settings.max_stored_bytes_per_key,
    )


def presented_key(request: Request) -> str | None:
    if key := request.headers.get(API_KEY_HEADER):
        return key.strip() or None
    authorization = request.headers.get("authorization", "")
    if authorization[: len(BEARER)].lower() == BEARER:
        return authorization[len(BEARER) :].strip() or None
    return None


async def authenticate(request: Request, services: Services) -> Caller:
    """The caller of this request, once its key is valid and within its rate."""
    settings = services.settings
    if settings.auth == "off":
        return ANONYMOUS
    secret = presented_key(request)
    if secret is None:
        raise UnauthorizedError(
            "this endpoint needs an API key: send it as X-API-Key or Authorization: Bearer",
            reason="missing_api_key",
        )
    admission = await services.store(
        api_keys.admit(secret, settings.rate_limit_rps, settings.rate_limit_burst)
    )
    key = admission.key
    if key is None:
        raise UnauthorizedError("the API key is not known")
    if refusal := key.refusal(time.time()):
        raise UnauthorizedError(refusal)
    if admission.wait_s > 0:
        # Rounded up, so a wait of a few milliseconds never reads "retry in 0.0 s".
        wait_s = math.ceil(admission.wait_s * 10) / 10
        raise RateLimitedError(
            f"the API key {key.key_id} is over its request rate; retry in {wait_s:.1f} s",
            retry_after_s=math.ceil(admission.wait_s),
        )
    return Caller(key.key_id, key.name, limits_of(key, settings))
