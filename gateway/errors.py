"""The one table that maps every domain error (`common.errors`) to an HTTP status.

Every error response has the same body: `{"detail": <message>, "reason": <stable code>}`.
Clients and tests branch on `reason`; `detail` says what happened in words.
"""

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import (
    BrokerUnavailableError,
    ByteBudgetError,
    CallbackRefusedError,
    CatDogError,
    DecompressionBombError,
    FeedbackConflictError,
    IdempotencyConflictError,
    IdempotencyKeyReusedError,
    ImageTooLargeError,
    InferenceFailedError,
    InsufficientStorageError,
    InvalidFieldError,
    InvalidHTTPError,
    InvalidImageError,
    JobExpiredError,
    JobFinishedError,
    JobNotFoundError,
    MalformedRequestError,
    MissingFieldError,
    ModelNotAvailableError,
    NoWorkerError,
    PredictionNotFoundError,
    PredictTimeoutError,
    QueueFullError,
    RateLimitedError,
    RequestTooLargeError,
    RetryLaterError,
    StorageFullError,
    TooManyFilesError,
    TooManyJobsError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)

log = logging.getLogger(__name__)


# Most specific first: the first class in an error's MRO found here decides its status.
STATUS_BY_ERROR: dict[type[CatDogError], int] = {
    DecompressionBombError: 422,
    InvalidImageError: 422,
    MissingFieldError: 422,
    InvalidFieldError: 422,
    MalformedRequestError: 422,
    InvalidHTTPError: 400,
    CallbackRefusedError: 422,
    UnauthorizedError: 401,
    UnsupportedMediaTypeError: 415,
    ImageTooLargeError: 413,
    TooManyFilesError: 413,
    RequestTooLargeError: 413,
    JobNotFoundError: 404,
    PredictionNotFoundError: 404,
    JobExpiredError: 410,
    JobFinishedError: 409,
    IdempotencyConflictError: 409,
    IdempotencyKeyReusedError: 422,
    FeedbackConflictError: 409,
    QueueFullError: 429,
    RateLimitedError: 429,
    TooManyJobsError: 429,
    ByteBudgetError: 429,
    ModelNotAvailableError: 503,
    NoWorkerError: 503,
    BrokerUnavailableError: 503,
    StorageFullError: 503,
    InsufficientStorageError: 507,
    PredictTimeoutError: 504,
    InferenceFailedError: 500,
}


STORAGE_FULL_RETRY_S = 30


def status_for(exc: CatDogError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_body(detail: str, reason: str) -> dict[str, str]:
    return {"detail": detail, "reason": reason}


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CatDogError)
    status = status_for(exc)
    headers = {}
    if isinstance(exc, RetryLaterError):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = 'Bearer realm="catdog"'

    log.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "request refused",
        extra={"status": status, "reason": exc.reason, "detail": exc.message},
    )
    return JSONResponse(error_body(exc.message, exc.reason), status_code=status, headers=headers)


async def _infrastructure_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("broker unavailable", extra={"error": str(exc)})
    return JSONResponse(
        error_body(f"the queue is unavailable: {exc}", BrokerUnavailableError.reason),
        status_code=503,
    )


async def _storage_full(request: Request, exc: Exception) -> JSONResponse:
    # Redis at maxmemory (noeviction) refuses writes with OOM. What a failed upload stored
    # was deleted on the way out (DEL is allowed when full), so a retry later can succeed.
    return await _domain_error(
        request,
        StorageFullError(
            "the service's storage is full; retry after running jobs finish or expire",
            retry_after_s=STORAGE_FULL_RETRY_S,
        ),
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # The client's own value is dropped from `errors` (`input`): it may be 10,000 characters
    # of a header, and the client already has it.
    errors = [
        {k: v for k, v in e.items() if k not in ("input", "url")}
        for e in jsonable_encoder(exc.errors())
    ]
    return JSONResponse(
        {"detail": _validation_detail(errors), "reason": "validation_error", "errors": errors},
        status_code=422,
    )


def _validation_detail(errors: list[dict[str, Any]]) -> str:
    """One sentence: `invalid request: query parameter offset: Input should be ...`."""
    problems = []
    for error in errors:
        where, *path = [str(p) for p in error.get("loc", ())] or ["body"]
        what = _WHERE.get(where, where)
        problems.append(f"{what} {'.'.join(path)}: {error.get('msg', 'invalid')}".strip())
    return "invalid request: " + "; ".join(problems or ["it does not match the API"])


_WHERE = {"query": "query parameter", "path": "path parameter", "header": "header"}


# Starlette's own refusals (an unknown path, a wrong method), in the same body as ours.
_HTTP_REASONS = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's "There was an error parsing the body" (a JSON body that is not JSON, a
        # form it cannot read): a malformed request like any other, 422 with its reason.
        return await _domain_error(
            request, MalformedRequestError(f"the request body could not be parsed: {exc.detail}")
        )
    reason = _HTTP_REASONS.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(str(exc.detail), reason), status_code=exc.status_code, headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CatDogError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(redis.OutOfMemoryError, _storage_full)
    for infrastructure in (redis.ConnectionError, redis.TimeoutError, OperationalError):
        app.add_exception_handler(infrastructure, _infrastructure_error)
