"""Job-end callbacks: one POST of the job summary, signed with HMAC-SHA256 of the body.

The receiver recomputes `hmac_sha256(secret, raw body)` and compares it with the
`X-Catdog-Signature: sha256=<hex>` header in constant time (`verify_signature`).
"""

import hashlib
import hmac
import json

import httpx

from common.errors import CallbackError
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


def post_callback(url: str, body: bytes, secret: str, job_id: str) -> int:
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(body, secret),
        "X-Catdog-Job-Id": job_id,
    }
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise CallbackError(f"callback to {url} failed: {exc}") from exc
    if not response.is_success:
        raise CallbackError(f"callback to {url} answered {response.status_code}")
    return response.status_code
