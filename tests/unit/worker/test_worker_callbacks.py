"""Callbacks: HMAC-SHA256 of the exact body, checked in constant time; the target checked
again at send time and the POST pinned to the address that check saw; no redirects; only
answers another try could change are retried."""

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from common.callback_targets import check_callback_url
from common.errors import CallbackError
from common.settings import Settings
from common.wire import JobStatus, JobSummary
from worker.callbacks import backoff_s, callback_body, post_callback, sign, verify_signature

PUBLIC = "93.184.215.14"
SETTINGS = Settings(_env_file=None, environment="test")  # type: ignore[call-arg]


def resolving_to(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


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


class _Recorder:
    def __init__(self, status: int = 200) -> None:
        self.posts: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                recorder.posts.append(dict(self.headers))
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    made = _Recorder()
    yield made
    made.server.shutdown()


def test_a_dns_answer_that_changes_between_submit_and_send_is_refused_at_send_time(
    recorder: _Recorder,
) -> None:
    answers = iter([[PUBLIC], ["127.0.0.1"]])  # public at submit, this machine at send

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    url = f"http://rebind.example.org:{recorder.port}/hook"
    check_callback_url(url, SETTINGS, rebinding)  # accepted at submit
    with pytest.raises(CallbackError, match="refused at send time") as refused:
        post_callback(url, b"{}", "secret", "job-1", SETTINGS, rebinding)
    assert not refused.value.retryable
    assert recorder.posts == []  # nothing reached the inside address


def test_the_post_goes_to_the_checked_address_with_the_urls_host_name(recorder: _Recorder) -> None:
    allowed = Settings(_env_file=None, callback_allowed_hosts=["receiver.test"])  # type: ignore[call-arg]
    url = f"http://receiver.test:{recorder.port}/hook"
    status = post_callback(
        url, json.dumps({}).encode(), "s", "job-2", allowed, resolving_to("127.0.0.1")
    )
    assert status == 200
    assert recorder.posts[0]["Host"] == f"receiver.test:{recorder.port}"


@pytest.mark.parametrize(
    ("status", "retryable"), [(302, False), (404, False), (408, True), (429, True), (503, True)]
)
def test_redirects_are_not_followed_and_only_408_429_and_5xx_are_retried(
    status: int, retryable: bool
) -> None:
    server = _Recorder(status)
    allowed = Settings(_env_file=None, callback_allowed_hosts=["127.0.0.1"])  # type: ignore[call-arg]
    try:
        with pytest.raises(CallbackError) as failed:
            post_callback(f"http://127.0.0.1:{server.port}/h", b"{}", "s", "j", allowed)
        assert failed.value.retryable is retryable
        assert len(server.posts) == 1  # a redirect was not followed
    finally:
        server.server.shutdown()
