"""Job-end callbacks: one POST of the job summary, signed with HMAC-SHA256 of the body.

The receiver recomputes `hmac_sha256(secret, raw body)` and compares it with the
`X-Catdog-Signature: sha256=<hex>` header in constant time (`verify_signature`).
"""

import hashlib
import hmac
import json

import httpx

from common.callback_targets import Resolver, check_callback_url, system_resolver
from common.errors import CallbackError, CatDogError
from common.settings import Settings
from common.wire import JobSummary

SIGNATURE_HEADER = "X-Catdog-Signature"
TIMEOUT_S = 10.0


def callback_body(summary: JobSummary) -> bytes:
    # The same bytes at every retry: nothing that changes while it is retried (its own
    # delivery state, the time left before expiry) is part of it.
    fields = summary.model_dump(mode="json", exclude={"callback_status", "expires_at"})
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    return header is not None and hmac.compare_digest(sign(body, secret), header)


def backoff_s(retries: int) -> float:
    """1, 2, 4, 8 ... seconds, at most a minute."""
    return float(min(60, 2**retries))


# Answers another try may change; any other non-2xx (most 4xx, a redirect) ends the retries.
RETRYABLE_STATUSES = frozenset({408, 429})


def post_callback(
    url: str,
    body: bytes,
    secret: str,
    job_id: str,
    settings: Settings,
    resolve: Resolver = system_resolver,
) -> int:
    """POST the signed body to `url`, checked again with a fresh DNS answer and sent to the
    address that answer gave (never re-resolved by the HTTP client). Redirects are not
    followed."""
    try:
        target = check_callback_url(url, settings, resolve)
    except CatDogError as exc:
        raise CallbackError(
            f"callback refused at send time: {exc.message}", retryable=False
        ) from exc
    headers = {
        "Content-Type": "application/json",
        "Host": target.host_header,
        SIGNATURE_HEADER: sign(body, secret),
        "X-Catdog-Job-Id": job_id,
    }
    # TLS still checks the certificate against the URL's host name (SNI), not the address.
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client:
            response = client.post(
                target.pinned_url(target.addresses[0]),
                content=body,
                headers=headers,
                extensions=extensions,
            )
    except httpx.HTTPError as exc:
        raise CallbackError(f"callback to {url} failed: {exc}") from exc
    status = response.status_code
    if not response.is_success:
        retryable = status >= 500 or status in RETRYABLE_STATUSES
        raise CallbackError(f"callback to {url} answered {status}", retryable=retryable)
    return status
