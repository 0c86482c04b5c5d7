"""Receiving a bulk upload: files go to Redis as their parts end, a batch of them (up to
`STORE_BATCH_BYTES`) per round trip, so the gateway never holds more than that batch and one
file (bounded by `max_image_bytes`) of an upload in memory.

Limits: more than `max_job_files` files -> 413 too_many_files; a body over `max_job_bytes`
-> 413 request_too_large. A single file over `max_image_bytes` does not sink the job: it is
dropped unread and its item fails with `too_large`, like any other bad item. Images are not
decoded here; a worker does that and records a per-item error for a bad one.
"""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from anyio.to_thread import run_sync
from starlette.requests import Request

from common.callback_targets import check_callback_url
from common.errors import (
    InvalidFieldError,
    MissingFieldError,
    RequestTooLargeError,
    TooManyFilesError,
)
from common.settings import Settings
from common.store import jobs
from common.store.jobs import NewJob
from common.store.ops import AsyncStore
from common.wire import ItemResult
from gateway.uploads import (
    MAX_FIELD_BYTES,
    PART_OVERHEAD_BYTES,
    PartData,
    PartEnd,
    PartStart,
    multipart_events,
)

FILES_FIELD = "files"
CALLBACK_FIELD = "callback_url"
# Files are stored in batches of about this many bytes (about 40 Kaggle photos), not one round
# trip each: a 1,000-photo upload then took 0.46 s of the gateway's CPU instead of 0.52 s
# (medians of 7 on the 2-core VM; bench/README.md).
STORE_BATCH_BYTES = 1024 * 1024


class UploadFingerprint:
    """What makes two uploads the same request, for an Idempotency-Key: each part's field
    name, file name and bytes, in order (SHA-256). The multipart boundary and part headers,
    which differ between two sends of the same files, do not count."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, event: PartStart | PartData | PartEnd) -> None:
        if isinstance(event, PartStart):
            head = f"\0part\0{event.name}\0{event.filename or ''}\0"
            self._hash.update(head.encode("utf-8", "surrogateescape"))
        elif isinstance(event, PartData):
            self._hash.update(event.data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _max_body(settings: Settings) -> int:
    return settings.max_job_bytes + settings.max_job_files * PART_OVERHEAD_BYTES


async def fingerprint_upload(request: Request, settings: Settings) -> str:
    """The fingerprint of an upload read to its end and stored nowhere (a replay's body)."""
    fingerprint = UploadFingerprint()
    async for event in multipart_events(
        request, _max_body(settings), RequestTooLargeError, "request"
    ):
        fingerprint.add(event)
    return fingerprint.hexdigest()


@dataclass
class _Receiving:
    fingerprint: UploadFingerprint = field(default_factory=UploadFingerprint)
    names: list[str] = field(default_factory=list)
    rejected: list[ItemResult] = field(default_factory=list)
    callback_url: str | None = None
    part: PartStart | None = None
    buffer: bytearray = field(default_factory=bytearray)
    oversized: bool = False
    stored_bytes: int = 0
    unstored: list[tuple[int, bytes]] = field(default_factory=list)  # files read, not yet sent
    unstored_bytes: int = 0


def chunked(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


@dataclass(frozen=True)
class ReceivedJob:
    job: NewJob
    chunks: list[list[int]]  # item indices, one list per chunk task
    stored_bytes: int  # what the upload holds in Redis


async def receive_job(
    request: Request,
    store: AsyncStore,
    settings: Settings,
    job_id: str,
    request_id: str | None,
    owner: str = "",
    after_each_file: Callable[[], Awaitable[None]] | None = None,
) -> ReceivedJob:
    """Stream the upload into Redis and plan its chunks (lists of item indices);
    `after_each_file` runs as each file is stored (the caller keeps its reservations alive).

    On any failure, what was stored is deleted before the error goes on."""
    state = _Receiving()
    try:
        events = multipart_events(request, _max_body(settings), RequestTooLargeError, "request")
        async for event in events:
            state.fingerprint.add(event)
            if isinstance(event, PartStart):
                _start_part(state, event, settings)
            elif isinstance(event, PartData) and state.part is not None:
                _add_data(state, event.data, settings)
            elif isinstance(event, PartEnd) and state.part is not None:
                await _end_part(state, store, job_id, settings)
                if after_each_file is not None:
                    await after_each_file()
        await _store_unstored(state, store, job_id, settings)
    except BaseException:
        await store(jobs.discard_upload(job_id, len(state.names)))
        raise
    if not state.names:
        raise MissingFieldError(f"no file in multipart field '{FILES_FIELD}'")
    rejected = {r.index for r in state.rejected}
    runnable = [i for i in range(len(state.names)) if i not in rejected]
    chunks = chunked(runnable, settings.chunk_size)
    job = NewJob(
        job_id=job_id,
        names=state.names,
        rejected=state.rejected,
        chunks=len(chunks),
        callback_url=state.callback_url,
        request_id=request_id,
        owner=owner,
        plan=chunks,
        fingerprint=state.fingerprint.hexdigest(),
    )
    return ReceivedJob(job, chunks, state.stored_bytes)


def _start_part(state: _Receiving, part: PartStart, settings: Settings) -> None:
    if part.name == FILES_FIELD and part.filename is not None:
        if len(state.names) >= settings.max_job_files:
            raise TooManyFilesError(
                f"a job takes at most {settings.max_job_files} files; split the upload"
            )
        state.names.append(part.filename)
    elif part.name != CALLBACK_FIELD:
        state.part = None  # an unknown field: its data is skipped
        return
    state.part, state.buffer, state.oversized = part, bytearray(), False


def _add_data(state: _Receiving, data: bytes, settings: Settings) -> None:
    if state.oversized:
        return
    state.buffer += data
    limit = settings.max_image_bytes if state.part and state.part.filename else MAX_FIELD_BYTES
    if len(state.buffer) > limit:
        if state.part is not None and state.part.filename is None:
            raise InvalidFieldError(f"form field {state.part.name} is longer than {limit} bytes")
        state.oversized, state.buffer = True, bytearray()


async def _end_part(state: _Receiving, store: AsyncStore, job_id: str, settings: Settings) -> None:
    part = state.part
    assert part is not None
    state.part = None
    if part.filename is None:  # the callback_url field
        url = state.buffer.decode("utf-8", "replace")
        # Resolving a name is blocking I/O: off the event loop.
        state.callback_url = (await run_sync(check_callback_url, url, settings)).url
        return
    index = len(state.names) - 1
    if state.oversized:
        state.rejected.append(
            ItemResult.failure(
                index, "too_large", f"the file is larger than {settings.max_image_bytes} bytes"
            )
        )
    else:
        state.unstored.append((index, bytes(state.buffer)))
        state.unstored_bytes += len(state.buffer)
        if state.unstored_bytes >= STORE_BATCH_BYTES:
            await _store_unstored(state, store, job_id, settings)
    state.buffer = bytearray()


async def _store_unstored(
    state: _Receiving, store: AsyncStore, job_id: str, settings: Settings
) -> None:
    if state.unstored:
        await store(jobs.store_images(job_id, state.unstored, settings.job_ttl_s))
        state.stored_bytes += state.unstored_bytes
        state.unstored, state.unstored_bytes = [], 0
