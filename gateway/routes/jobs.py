"""Bulk jobs: submit (POST /jobs), follow with paged results (GET), cancel (DELETE)."""

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response

from common.errors import BrokerUnavailableError, IdempotencyConflictError, JobNotFoundError
from common.store import idempotency, jobs
from common.store.ops import AsyncStore
from common.wire import JobSummary
from gateway.dependencies import RequestIdDep, ServicesDep
from gateway.job_uploads import receive_job
from gateway.monitoring import MetricsDep
from gateway.openapi import error_responses, multipart_body
from gateway.schemas import CancelResponse, JobAccepted, JobStatusResponse
from gateway.services import Services

log = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"])

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
    store: AsyncStore, job_id: str, request: Request, response: Response
) -> JobAccepted:
    try:
        record = await store(jobs.read(job_id))
    except JobNotFoundError as exc:
        raise IdempotencyConflictError(
            "a request with this Idempotency-Key is still being received; retry shortly"
        ) from exc
    response.headers["Idempotent-Replayed"] = "true"
    return _accepted(record.summary(), request, response)


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(409, 413, 422, 429, 503),
    openapi_extra=JOBS_BODY,
)
async def create_job(
    request: Request,
    response: Response,
    services: ServicesDep,
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
    store, settings = services.store, services.settings
    if idempotency_key and (existing := await store(idempotency.lookup(idempotency_key))):
        return await _replay(store, existing, request, response)
    await services.ensure_capacity(settings.bulk_queue)
    job_id = uuid.uuid4().hex
    reservation = idempotency.reserve(idempotency_key or "", job_id, settings.job_ttl_s)
    if idempotency_key and not await store(reservation):
        existing = await store(idempotency.lookup(idempotency_key))
        return await _replay(store, existing or job_id, request, response)
    try:
        new_job, chunks = await receive_job(request, store, settings, job_id, request_id)
        ttls = settings.job_ttl_s, settings.job_tombstone_ttl_s
        record = await store(jobs.create(new_job, *ttls))
        await services.dispatcher.chunks(job_id, chunks, request_id)
    except BaseException:
        if idempotency_key:
            await store(idempotency.release(idempotency_key, job_id))
        if await store(jobs.exists(job_id)):  # created, but its chunks could not all be queued
            await _cancel_quietly(services, job_id)
        raise
    metrics.observe_job_submitted(record.total)
    if record.ended:  # every file was refused at upload
        await services.dispatcher.job_ended(job_id)
    log.info("job accepted", extra={"job_id": job_id, "total": record.total, "chunks": len(chunks)})
    return _accepted(record.summary(), request, response)


@router.get(
    "/{job_id}",
    name="get_job",
    response_model=JobStatusResponse,
    responses=error_responses(404, 410),
)
async def get_job(
    job_id: JobId,
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0, description="First item index of the page")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Items per page")] = 100,
) -> JobStatusResponse:
    """The job's status, counts and timestamps, with one page of its items' results."""
    page = await services.store(jobs.page(job_id, offset, limit))
    return JobStatusResponse.from_page(page)


@router.delete(
    "/{job_id}",
    response_model=CancelResponse,
    responses=error_responses(404, 409, 410),
)
async def cancel_job(job_id: JobId, services: ServicesDep) -> CancelResponse:
    """Cancel a queued or running job; items finished before the cancel keep their results."""
    record, changed = await services.store(jobs.cancel(job_id))
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


async def _cancel_quietly(services: Services, job_id: str) -> None:
    try:
        record, _ = await services.store(jobs.cancel(job_id))
        await _after_cancel(services, job_id, record.chunks, record.total)
    except Exception:
        log.exception("could not cancel a job whose chunks were not all queued")
