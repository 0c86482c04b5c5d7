"""Callback signing: HMAC-SHA256 of the exact body, checked in constant time."""

import hashlib
import hmac
import json
from datetime import UTC, datetime

from common.wire import JobStatus, JobSummary
from worker.callbacks import backoff_s, callback_body, sign, verify_signature

SUMMARY = JobSummary(
    job_id="j",
    status=JobStatus.SUCCEEDED,
    total=3,
    done=3,
    failed=0,
    pending=0,
    created_at=datetime(2025, 1, 1, tzinfo=UTC),
    callback_status="retrying",
)


def test_the_signature_is_the_hmac_sha256_of_the_body() -> None:
    body = callback_body(SUMMARY)
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == f"sha256={expected}"
    assert verify_signature(body, sign(body, "s3cret"), "s3cret")


def test_a_changed_body_wrong_secret_or_missing_header_fails_verification() -> None:
    body = callback_body(SUMMARY)
    signature = sign(body, "s3cret")
    assert not verify_signature(body.replace(b"3", b"4"), signature, "s3cret")
    assert not verify_signature(body, signature, "other")
    assert not verify_signature(body, None, "s3cret")


def test_the_body_is_the_job_summary_as_canonical_json_without_its_own_delivery_state() -> None:
    body = callback_body(SUMMARY)
    fields = json.loads(body)
    assert list(fields) == sorted(fields) and b" " not in body
    assert (fields["job_id"], fields["status"], fields["done"]) == ("j", "succeeded", 3)
    assert fields["created_at"] == "2025-01-01T00:00:00Z"
    assert "callback_status" not in fields and "expires_at" not in fields


def test_retries_back_off_exponentially_up_to_a_minute() -> None:
    assert [backoff_s(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
