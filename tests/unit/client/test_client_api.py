"""The client's streamed multipart body and its HTTP calls (against a mock transport)."""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from client.api import RATE_LIMITED_ATTEMPTS, ApiError, CatdogClient, MultipartBody
from client.photos import find_photos
from gateway.uploads import PartData, PartStart, multipart_events


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.jpg").write_bytes(b"A" * 100_000)
    (tmp_path / "sub" / 'b "quoted".PNG').write_bytes(b"B" * 10)
    (tmp_path / "notes.txt").write_text("skip me")
    return tmp_path


def test_the_streamed_body_has_its_declared_length_and_parses_back(folder: Path) -> None:
    photos = find_photos(folder)
    body = MultipartBody(photos, {"callback_url": "http://hook"})
    sent: list[int] = []
    raw = b"".join(body.stream(sent.append))
    assert len(raw) == body.length()
    assert sum(sent) == 100_010  # progress counts file bytes

    async def parse() -> list[Any]:
        headers = [(b"content-type", body.content_type.encode())]
        chunks = [raw[i : i + 4096] for i in range(0, len(raw), 4096)]

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

        request = Request({"type": "http", "method": "POST", "headers": headers}, receive)
        return [e async for e in multipart_events(request, 10**7, ValueError, "x")]  # type: ignore[arg-type]

    events = asyncio.run(parse())
    starts = [e for e in events if isinstance(e, PartStart)]
    assert [(s.name, s.filename) for s in starts] == [
        ("callback_url", None),
        ("files", "a.jpg"),
        ("files", "b %22quoted%22.PNG"),
    ]
    assert (
        sum(len(e.data) for e in events if isinstance(e, PartData)) == len("http://hook") + 100_010
    )


def client_with(handler: Any) -> CatdogClient:
    return CatdogClient("http://svc", transport=httpx.MockTransport(handler))


def test_submit_sends_the_length_and_the_idempotency_key(folder: Path) -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(request.headers)
        seen["body"] = request.read()
        return httpx.Response(202, json={"job_id": "j", "total": 2, "status": "queued"})

    with client_with(handler) as client:
        accepted = client.submit_job(find_photos(folder), idempotency_key="k-1")
    assert accepted["job_id"] == "j"
    assert seen["idempotency-key"] == "k-1"
    assert int(seen["content-length"]) == len(seen["body"])
    assert "transfer-encoding" not in seen


def test_results_follow_next_offset_until_the_last_page() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        items = [{"index": i} for i in range(offset, min(offset + 2, 5))]
        following = offset + 2 if offset + 2 < 5 else None
        return httpx.Response(200, json={"results": {"items": items, "next_offset": following}})

    with client_with(handler) as client:
        assert [i["index"] for i in client.results("j", page=2)] == [0, 1, 2, 3, 4]


def test_wait_polls_until_the_job_ends_and_reports_progress() -> None:
    states = iter(["queued", "running", "running", "succeeded"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": next(states), "done": 1, "failed": 0})

    seen: list[str] = []
    with client_with(handler) as client:
        final = client.wait(
            "j", on_progress=lambda s: seen.append(s["status"]), sleep=lambda _: None
        )
    assert final["status"] == "succeeded"
    assert seen == ["queued", "running", "running", "succeeded"]


def test_an_error_answer_raises_with_its_reason() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(410, json={"detail": "job j has expired", "reason": "job_expired"})

    with client_with(handler) as client, pytest.raises(ApiError) as caught:
        client.job("j")
    assert (caught.value.status, caught.value.reason) == (410, "job_expired")
    assert json.loads(json.dumps(caught.value.detail)) == "job j has expired"


def rate_limited(retry_after: str) -> httpx.Response:
    return httpx.Response(
        429,
        json={"detail": "over its request rate", "reason": "rate_limited"},
        headers={"Retry-After": retry_after},
    )


def test_a_rate_limited_photo_is_sent_again_after_the_retry_after(tmp_path: Path) -> None:
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"jpeg bytes")
    answers = iter(
        [rate_limited("1"), rate_limited("2"), httpx.Response(200, json={"label": "cat"})]
    )
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return next(answers)

    waits: list[float] = []
    with client_with(handler) as client:
        assert client.predict(photo, sleep=waits.append)["label"] == "cat"
    assert waits == [1.0, 2.0]
    assert len(bodies) == 3 and all(b"jpeg bytes" in body for body in bodies)


def test_a_photo_still_rate_limited_after_every_attempt_raises_429(tmp_path: Path) -> None:
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"x")
    waits: list[float] = []
    with client_with(lambda _: rate_limited("soon")) as client, pytest.raises(ApiError) as caught:
        client.predict(photo, sleep=waits.append)
    assert caught.value.status == 429
    assert waits == [1.0] * (RATE_LIMITED_ATTEMPTS - 1)  # an unreadable Retry-After: 1 s
