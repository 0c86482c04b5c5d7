"""The harness's HTTP/1.1 client for POST /predict: one keep-alive connection per caller,
each photo's request encoded once, the answer read by its Content-Length.

Why not httpx: the load generator shares the machine's cores with the service it measures.
On the project's 2-core VM httpx spent about 2.8 ms of CPU on each /predict at concurrency
32 (building the multipart body, its connection pool, header models), CPU taken from the
gateway and the workers, and time added to each latency at concurrency 1. A load generator
should cost the service as little as it can (what wrk does); this one sends bytes prepared
in advance and parses only a status line and a Content-Length. catdog and the peer-style
server are measured with the same client.

It speaks only what the servers under test answer (uvicorn: a status line, headers, a body
of declared length) and refuses anything else loudly instead of guessing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024


class ProtocolError(RuntimeError):
    """The server answered with something this client does not read (chunked, no length)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise RuntimeError(f"HTTP {self.status}: {self.body[:300]!r}")


def upload_request(
    url: str, path: str, data: bytes, headers: dict[str, str] | None = None
) -> bytes:
    """The whole POST of `data` as the multipart field `file` of `url` + `path`, ready to send."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="file"; filename="photo.jpg"\r\n',
            b"Content-Type: image/jpeg\r\n\r\n",
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {urlsplit(url).netloc}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """One keep-alive connection; requests on it go one at a time."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only plain http://host:port URLs are supported, not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> Answer:
        """Send one prepared request and read its answer (reconnecting if the server closed)."""
        if self._writer is None or self._writer.is_closing():
            await self._connect()
        assert self._reader is not None and self._writer is not None
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD_BYTES:
            raise ProtocolError("answer head too long")
        status, length, closes = _parse_head(head)
        body = await self._reader.readexactly(length)
        if closes:
            await self.close()
        return Answer(status, body)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()
        self._reader = self._writer = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self._host, self._port, limit=MAX_HEAD_BYTES
        )


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, whether the server closes the connection after it)."""
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, code, *_ = status_line.split(" ", 2)
    if not version.startswith("HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x answer: {status_line!r}")
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ProtocolError(f"an answer without Content-Length: {status_line!r} {headers}")
    return int(code), int(headers["content-length"]), headers.get("connection") == "close"
