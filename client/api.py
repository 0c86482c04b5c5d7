"""A small synchronous client of the HTTP API.

Bulk uploads stream from disk: the multipart body is generated file by file (one open file at
a time), with its exact Content-Length computed up front, so a folder of thousands of photos
never sits in the client's memory either.
"""

import mimetypes
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from common.wire import TERMINAL

READ_CHUNK = 64 * 1024
# Sends of one photo while the service answers 429 (over the key's rate), and the longest
# Retry-After the client waits between two of them.
RATE_LIMITED_ATTEMPTS = 5
MAX_RETRY_AFTER_S = 30.0


class ApiError(Exception):
    """The service answered with an error status."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        reason, detail = str(body.get("reason", "error")), str(body.get("detail", ""))
    except ValueError:
        reason, detail = "error", response.text[:200]
    raise ApiError(response.status_code, reason, detail)


def _retry_after_s(response: httpx.Response) -> float:
    """The response's Retry-After in seconds (1 where it has none or an unreadable one)."""
    try:
        wait_s = float(response.headers.get("Retry-After", 1))
    except ValueError:
        wait_s = 1.0
    return min(max(wait_s, 0.0), MAX_RETRY_AFTER_S)


@dataclass(frozen=True)
class MultipartBody:
    """A multipart/form-data body streamed from files on disk."""

    files: Sequence[Path]
    fields: dict[str, str]
    file_field: str = "files"
    boundary: str = ""

    def __post_init__(self) -> None:
        if not self.boundary:
            object.__setattr__(self, "boundary", f"catdog-{uuid.uuid4().hex}")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _field_head(self, name: str) -> bytes:
        return (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        )

    def _file_head(self, path: Path) -> bytes:
        filename = path.name.replace('"', "%22")
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{self.file_field}"; filename="{filename}"\r\n'
            f"Content-Type: {media}\r\n\r\n"
        ).encode()

    def _tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def length(self) -> int:
        size = sum(len(self._field_head(k)) + len(v.encode()) + 2 for k, v in self.fields.items())
        size += sum(len(self._file_head(p)) + p.stat().st_size + 2 for p in self.files)
        return size + len(self._tail())

    def stream(self, on_bytes: Callable[[int], None] | None = None) -> Iterator[bytes]:
        for name, value in self.fields.items():
            yield self._field_head(name) + value.encode() + b"\r\n"
        for path in self.files:
            yield self._file_head(path)
            with path.open("rb") as handle:
                while chunk := handle.read(READ_CHUNK):
                    if on_bytes:
                        on_bytes(len(chunk))
                    yield chunk
            yield b"\r\n"
        yield self._tail()


class CatdogClient:
    def __init__(
        self,
        url: str,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        api_key: str | None = None,
    ):
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(
            base_url=url.rstrip("/"), timeout=timeout_s, transport=transport, headers=headers
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "CatdogClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def predict(self, photo: Path, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
        """Classify one photo. Over the API key's request rate (429), wait as long as the
        service's Retry-After says and send it again, up to RATE_LIMITED_ATTEMPTS times: a
        folder sent photo by photo outruns the default rate (20 a second) once its burst is
        spent, and each of those photos would otherwise come back unclassified."""
        data = photo.read_bytes()  # an unreadable file raises here, before anything is sent
        for attempt in range(1, RATE_LIMITED_ATTEMPTS + 1):
            response = self.http.post("/predict", files={"file": (photo.name, data)})
            if response.status_code != 429 or attempt == RATE_LIMITED_ATTEMPTS:
                break
            sleep(_retry_after_s(response))
        _raise_for_error(response)
        body: dict[str, Any] = response.json()
        return body

    def submit_job(
        self,
        photos: Sequence[Path],
        *,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        body = MultipartBody(photos, {"callback_url": callback_url} if callback_url else {})
        headers = {"Content-Type": body.content_type, "Content-Length": str(body.length())}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        response = self.http.post("/jobs", content=body.stream(on_bytes), headers=headers)
        _raise_for_error(response)
        accepted: dict[str, Any] = response.json()
        return accepted

    def job(self, job_id: str, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        response = self.http.get(f"/jobs/{job_id}", params={"offset": offset, "limit": limit})
        _raise_for_error(response)
        body: dict[str, Any] = response.json()
        return body

    def cancel(self, job_id: str) -> dict[str, Any]:
        response = self.http.delete(f"/jobs/{job_id}")
        _raise_for_error(response)
        body: dict[str, Any] = response.json()
        return body

    def results(self, job_id: str, page: int = 1000) -> list[dict[str, Any]]:
        """Every item of the job, page after page."""
        items: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            body = self.job(job_id, offset, page)
            items += body["results"]["items"]
            offset = body["results"]["next_offset"]
        return items

    def wait(
        self,
        job_id: str,
        poll_s: float = 1.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Poll until the job ends; `on_progress` sees every poll's summary."""
        while True:
            summary = self.job(job_id, limit=1)
            if on_progress:
                on_progress(summary)
            if summary["status"] in TERMINAL:
                return summary
            sleep(poll_s)
