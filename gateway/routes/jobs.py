"""Bulk jobs: submit (POST /jobs), follow with paged results (GET), cancel (DELETE)."""

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response

from common.errors import (
    BrokerUnavailableError,
    ByteBudgetError,
    IdempotencyConflictError,
    IdempotencyKeyReusedError,
    JobNotFoundError,
    TooManyJobsError,
)
from common.settings import Settings
from common.store import idempotency, jobs, limits
from common.store.ops import AsyncStore
from common.wire import JobSummary
from gateway.auth import Caller
from gateway.dependencies import CallerDep, RequestIdDep, ServicesDep
from gateway.job_uploads import fingerprint_upload, receive_job
from gateway.monitoring import MetricsDep
from gateway.openapi import error_responses, multipart_body
from gateway.schemas import CancelResponse, JobAccepted, JobStatusResponse
from gateway.services import RETRY_AFTER_S, Services

log = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"])

MAX_OFFSET = 10**9

JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

JOBS_BODY = multipart_body(
    {
        "files": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "The photos; repeat the field once per file",
        },
        "callback_url": {
            "type": "string",
            "format": "uri",
            "description": "Receives one signed POST (X-Catdog-Signature) when the job ends",
        },
    },
    ["files"],
)


def _accepted(record: JobSummary, request: Request, response: Response) -> JobAccepted:
    status_url = str(request.url_for("get_job", job_id=record.job_id))
    response.headers["Location"] = status_url
    return JobAccepted(
        job_id=record.job_id,
        status=record.status,
        status_url=status_url,
        total=record.total,
        created_at=record.created_at,
    )


async def _replay(
    services: Services, caller: Caller, job_id: str, request: Request, response: Response
) -> JobAccepted:
    """The job an Idempotency-Key already names, if this upload is the same as its own."""
    try:
        record = await services.store(jobs.read(job_id, caller.key_id))
    except JobNotFoundError as exc:
        raise IdempotencyConflictError(
            "a request with this Idempotency-Key is still being received; retry shortly"
        ) from exc
    fingerprint = await fingerprint_upload(request, services.settings)
    if record.fingerprint and fingerprint != record.fingerprint:
        raise IdempotencyKeyReusedError(
            f"the Idempotency-Key already names job {job_id}, whose upload had other files;"
            " use a new key for a new upload"
        )
    response.headers["Idempotent-Replayed"] = "true"
    return _accepted(record.summary(), request, response)


def _declared_bytes(request: Request, settings: Settings) -> int:
    """What the upload will hold at most: its Content-Length, else the job byte limit."""
    try:
        declared = int(request.headers.get("content-length", ""))
    except ValueError:
        declared = settings.max_job_bytes
    return max(0, min(declared, settings.max_job_bytes))


async def _hold_place(services: Services, caller: Caller, job_id: str, nbytes: int) -> None:
    """Refuse the job before a byte of it is stored if the caller's limits do not allow it."""
    if caller.limits is None:
        return
    held = await services.store(limits.reserve_job(caller.key_id, job_id, nbytes, caller.limits))
    if held.verdict == "too_many_jobs":
        raise TooManyJobsError(
            f"the API key {caller.key_id} already has {caller.limits.active_jobs} jobs that have"
            " not ended; wait for one to end or cancel one",
            retry_after_s=RETRY_AFTER_S,
        )
    if not held.ok:
        raise ByteBudgetError(
            f"the API key {caller.key_id} may hold {caller.limits.stored_bytes} bytes of uploads"
            f" at once; its jobs hold {held.held_bytes} and this upload declares {nbytes}",
            retry_after_s=RETRY_AFTER_S,
        )


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 409, 413, 422, 429, 503, 507),
    openapi_extra=JOBS_BODY,
)
async def create_job(
    request: Request,
    response: Response,
    services: ServicesDep,
    caller: CallerDep,
    request_id: RequestIdDep,
    metrics: MetricsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="The same key within the job's lifetime returns the same job",
        ),
    ] = None,
) -> JobAccepted:
    """Submit photos (multipart field `files`, repeated) for classification in the background."""
    store, settings, owner = services.store, services.settings, caller.key_id
    if idempotency_key and (existing := await store(idempotency.lookup(owner, idempotency_key))):
        return await _replay(services, caller, existing, request, response)
    await services.ensure_capacity(settings.bulk_queue, _declared_bytes(request, settings))
    job_id = uuid.uuid4().hex
    pending_ttl_s = settings.idempotency_pending_ttl_s
    reservation = idempotency.reserve(owner, idempotency_key or "", job_id, pending_ttl_s)
    if idempotency_key and not await store(reservation):
        existing = await store(idempotency.lookup(owner, idempotency_key))
        return await _replay(services, caller, existing or job_id, request, response)
    try:
        await _hold_place(services, caller, job_id, _declared_bytes(request, settings))
        keep_reserved = (
            _renewer(store, owner, idempotency_key, job_id, pending_ttl_s)
            if idempotency_key
            else None
        )
        received = await receive_job(
            request, store, settings, job_id, request_id, owner, keep_reserved
        )
        if caller.limits is not None:
            await store(limits.settle_bytes(owner, job_id, received.stored_bytes))
        ttls = settings.job_ttl_s, settings.job_tombstone_ttl_s
        record = await store(jobs.create(received.job, *ttls))
        if idempotency_key:
            await store(idempotency.commit(owner, idempotency_key, job_id, settings.job_ttl_s))
        await services.dispatcher.chunks(job_id, received.chunks, request_id)
    except BaseException:
        await _undo_submission(services, owner, idempotency_key, job_id)
        raise
    metrics.observe_job_submitted(record.total)
    if record.ended:  # every file was refused at upload
        await services.dispatcher.job_ended(job_id)
    log.info(
        "job accepted",
        extra={"job_id": job_id, "total": record.total, "chunks": len(received.chunks)},
    )
    return _accepted(record.summary(), request, response)


def _renewer(
    store: AsyncStore, owner: str, key: str, job_id: str, ttl_s: int
) -> Callable[[], Awaitable[None]]:
    """Renews the pending reservation while an upload keeps arriving, at most three times a
    TTL, so a long upload keeps its key and a dead one lets it lapse within `ttl_s`."""
    renewed_at = time.monotonic()

    async def renew() -> None:
        nonlocal renewed_at
        if time.monotonic() - renewed_at >= ttl_s / 3:
            renewed_at = time.monotonic()
            await store(idempotency.commit(owner, key, job_id, ttl_s))

    return renew


async def _undo_submission(
    services: Services, owner: str, idempotency_key: str | None, job_id: str
) -> None:
    store = services.store
    if idempotency_key:
        await store(idempotency.release(owner, idempotency_key, job_id))
    if await store(jobs.exists(job_id)):  # created, but its chunks could not all be queued
        await _cancel_quietly(services, owner, job_id)
    else:
        await store(limits.release_job(owner, job_id))


@router.get(
    "/{job_id}",
    name="get_job",
    response_model=JobStatusResponse,
    responses=error_responses(401, 404, 410, 422, 429),
)
async def get_job(
    job_id: JobId,
    services: ServicesDep,
    caller: CallerDep,
    # Bounded: Redis refuses list indices beyond 64 bits, and no job has more items.
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="First item index of the page")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Items per page")] = 100,
) -> JobStatusResponse:
    """The job's status, counts and timestamps, with one page of its items' results."""
    page = await services.store(jobs.page(job_id, offset, limit, caller.key_id))
    return JobStatusResponse.from_page(page)


@router.delete(
    "/{job_id}",
    response_model=CancelResponse,
    responses=error_responses(401, 404, 409, 410, 422, 429),
)
async def cancel_job(job_id: JobId, services: ServicesDep, caller: CallerDep) -> CancelResponse:
    """Cancel a queued or running job; items finished before the cancel keep their results."""
    record, changed = await services.store(jobs.cancel(job_id, caller.key_id))
    if changed:
        await _after_cancel(services, job_id, record.chunks, record.total)
        log.info("job cancelled", extra={"job_id": job_id, "done": record.done})
    return CancelResponse.from_record(record)


async def _after_cancel(services: Services, job_id: str, chunks: int, total: int) -> None:
    # The cancel already holds: workers check the flag and the store refuses late writes.
    # Revoking spares them the work; deleting the images frees memory now, not at expiry.
    try:
        await services.dispatcher.revoke_chunks(job_id, chunks)
        await services.dispatcher.job_ended(job_id)
    except BrokerUnavailableError as exc:
        log.warning("could not revoke or report a cancel", extra={"error": exc.message})
    await services.store(jobs.discard_upload(job_id, total))


async def _cancel_quietly(services: Services, owner: str, job_id: str) -> None:
    try:
        record, _ = await services.store(jobs.cancel(job_id, owner))
        await _after_cancel(services, job_id, record.chunks, record.total)
    except Exception:
        log.exception("could not cancel a job whose chunks were not all queued")
