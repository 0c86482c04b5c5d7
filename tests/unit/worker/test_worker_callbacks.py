"""Callback signing: HMAC-SHA256 of the exact body, checked in constant time."""

import hashlib
import hmac
import json

from worker.callbacks import backoff_s, callback_body, sign, verify_signature


def test_the_signature_is_the_hmac_sha256_of_the_body() -> None:
    body = callback_body({"job_id": "j", "status": "succeeded", "done": 3})
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == f"sha256={expected}"
    assert verify_signature(body, sign(body, "s3cret"), "s3cret")


def test_a_changed_body_wrong_secret_or_missing_header_fails_verification() -> None:
    body = callback_body({"job_id": "j", "done": 3})
    signature = sign(body, "s3cret")
    assert not verify_signature(body.replace(b"3", b"4"), signature, "s3cret")
    assert not verify_signature(body, signature, "other")
    assert not verify_signature(body, None, "s3cret")


def test_the_body_is_canonical_json() -> None:
    assert callback_body({"b": 1, "a": None}) == b'{"a":null,"b":1}'
    assert json.loads(callback_body({"x": [1]})) == {"x": [1]}


def test_retries_back_off_exponentially_up_to_a_minute() -> None:
    assert [backoff_s(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
