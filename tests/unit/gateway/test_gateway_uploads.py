"""Streaming multipart parsing: limits hold while the body arrives, never after."""

import asyncio
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis
from starlette.requests import Request

from common.errors import (
    CatDogError,
    ImageTooLargeError,
    MalformedRequestError,
    MissingFieldError,
    TooManyFilesError,
)
from common.settings import Settings
from common.store import jobs
from common.store.ops import AsyncStore, Op
from gateway import job_uploads
from gateway.job_uploads import chunked, receive_job
from gateway.uploads import (
    PartData,
    PartEnd,
    PartStart,
    clean_filename,
    multipart_events,
    read_single_file,
)

BOUNDARY = "xyz"


def body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
        )
    return out + f"--{BOUNDARY}--\r\n".encode()


class Upload:
    """A request whose body arrives in the given chunks; records how much was read."""

    def __init__(self, chunks: Sequence[bytes], headers: dict[str, str] | None = None) -> None:
        self.chunks = list(chunks)
        self.read = 0
        raw = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", **(headers or {})}
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": [(k.encode(), v.encode()) for k, v in raw.items()],
        }
        self.request = Request(scope, self.receive)

    async def receive(self) -> dict[str, object]:
        chunk = self.chunks.pop(0) if self.chunks else b""
        self.read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def read_file(upload: Upload, max_bytes: int = 1000) -> tuple[str, bytes]:
    result = asyncio.run(read_single_file(upload.request, "file", max_bytes))
    return result.filename, result.data


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_a_file_is_reassembled_whatever_the_chunking(chunk_size: int) -> None:
    data = bytes(range(256)) * 3
    raw = body(("note", None, b"hello"), ("file", "C:\\pets\\rex.jpg", data))
    assert read_file(Upload(split(raw, chunk_size))) == ("rex.jpg", data)


def test_events_come_in_order_with_field_names_and_file_names() -> None:
    raw = body(("callback_url", None, b"http://x"), ("files", "a.jpg", b"AA"))

    async def collect() -> list[object]:
        return [
            e
            async for e in multipart_events(Upload([raw]).request, 10_000, ImageTooLargeError, "x")
        ]

    events = asyncio.run(collect())
    starts = [e for e in events if isinstance(e, PartStart)]
    assert [(s.name, s.filename) for s in starts] == [("callback_url", None), ("files", "a.jpg")]
    assert b"".join(e.data for e in events if isinstance(e, PartData)) == b"http://xAA"
    assert sum(isinstance(e, PartEnd) for e in events) == 2


def test_a_declared_oversized_body_is_refused_before_any_byte_is_read() -> None:
    upload = Upload([body(("file", "a.jpg", b"x" * 10))], {"content-length": str(10**9)})
    with pytest.raises(ImageTooLargeError):
        read_file(upload)
    assert upload.read == 0


def test_an_oversized_file_is_refused_while_it_streams() -> None:
    raw = body(("file", "a.jpg", b"x" * 50_000))
    upload = Upload(split(raw, 1000))
    with pytest.raises(ImageTooLargeError):
        read_file(upload, max_bytes=5_000)
    assert upload.read < 10_000  # stopped soon after the limit, not at the end


@pytest.mark.parametrize(
    ("raw", "content_type", "error"),
    [
        (body(("image", "a.jpg", b"x")), None, MissingFieldError),
        (body(("file", None, b"not a file")), None, MissingFieldError),
        (b'{"file": 1}', "application/json", MissingFieldError),
        (b"--xyz\r\nno headers", None, MalformedRequestError),
        (body(("file", "a.jpg", b"1"), ("file", "b.jpg", b"2")), None, TooManyFilesError),
        (body(("file", "a.jpg", b"12345"))[:-20], None, MalformedRequestError),
    ],
    ids=["wrong field", "field without file", "json body", "malformed", "two files", "cut short"],
)
def test_bad_bodies_raise_their_domain_error(
    raw: bytes, content_type: str | None, error: type[CatDogError]
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    with pytest.raises(error):
        read_file(Upload([raw], headers))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y.png", "y.png"),
        ("", "unnamed"),
        ("a" * 300, "a" * 255),
        ("a" * 1000 + ".jpeg", "a" * 250 + ".jpeg"),
        ("..", "unnamed"),
        ("../..", "unnamed"),
        ("a\x00b\x1b[31mc\x7f\x85.jpg", "a\ufffdb\ufffd[31mc\ufffd\ufffd.jpg"),
        ("tab\there.png", "tab\ufffdhere.png"),
    ],
    ids=["traversal", "windows", "empty", "long", "long-suffix", "dotdot", "up", "controls", "tab"],
)
def test_file_names_lose_their_directories_controls_and_excess(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean


def test_chunks_cover_every_index_once_in_order() -> None:
    assert chunked(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunked([], 3) == []


def test_a_file_name_in_invalid_utf8_keeps_its_readable_part() -> None:
    raw = body(("file", None, b"x")).replace(
        b'name="file"', b'name="file"; filename="caf\xc3\xa9\xff.jpg"'
    )
    assert read_file(Upload([raw])) == ("caf\u00e9\ufffd.jpg", b"x")


class CountingStore(AsyncStore):
    """A real store that counts its round trips."""

    calls = 0

    async def __call__(self, op: Op[object]) -> object:
        self.calls += 1
        return await super().__call__(op)


def test_a_bulk_upload_stores_every_file_in_a_few_round_trips(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_uploads, "STORE_BATCH_BYTES", 1000)
    photos = [bytes([n]) * 300 for n in range(10)]
    payload = body(*[("files", f"{n}.jpg", data) for n, data in enumerate(photos)])

    async def upload() -> tuple[list[bytes | None], int, int]:
        client = aioredis.Redis.from_url(redis_url)
        store = CountingStore(client)
        try:
            received = await receive_job(
                Upload(split(payload, 128)).request, store, Settings(), "job-1", None
            )
            calls = store.calls
            stored = await store(jobs.images("job-1", list(range(10))))
        finally:
            await client.aclose()
        return stored, received.stored_bytes, calls

    stored, stored_bytes, calls = asyncio.run(upload())

    assert stored == photos
    assert stored_bytes == 3000
    # 300-byte files in batches of at least 1,000 bytes: four per round trip, then the rest.
    assert calls == 3


def test_a_bulk_upload_cut_short_is_refused_and_leaves_none_of_its_files_stored(
    redis_url: str,
) -> None:
    payload = body(("files", "a.jpg", b"a" * 300), ("files", "b.jpg", b"b" * 300))
    truncated = payload[: payload.index(b"b" * 300) + 100]  # the body ends inside b.jpg

    async def upload() -> list[bytes | None]:
        client = aioredis.Redis.from_url(redis_url)
        store = AsyncStore(client)
        try:
            with pytest.raises(MalformedRequestError):
                await receive_job(Upload([truncated]).request, store, Settings(), "job-2", None)
            return await store(jobs.images("job-2", [0, 1]))
        finally:
            await client.aclose()

    assert asyncio.run(upload()) == [None, None]
