"""Serving errors and the one table that maps every domain error to an HTTP status.

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

from common.errors import (
    CatDogError,
    DecompressionBombError,
    ImageTooLargeError,
    InvalidImageError,
    ModelNotAvailableError,
    UnsupportedMediaTypeError,
)
from common.jobstore import JobExpiredError, JobFinishedError, JobNotFoundError
from gateway.quality import FeedbackConflictError, PredictionNotFoundError

log = logging.getLogger(__name__)


class MissingFieldError(CatDogError):
    """The multipart body lacks the expected field (or is not multipart at all)."""

    reason = "missing_field"


class InvalidFieldError(CatDogError):
    reason = "invalid_field"


class MalformedRequestError(CatDogError):
    reason = "malformed_request"


class TooManyFilesError(CatDogError):
    reason = "too_many_files"


class RequestTooLargeError(CatDogError):
    reason = "request_too_large"


class QueueFullError(CatDogError):
    reason = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NoWorkerError(CatDogError):
    reason = "no_worker"


class BrokerUnavailableError(CatDogError):
    reason = "broker_unavailable"


class PredictTimeoutError(CatDogError):
    reason = "timeout"


class IdempotencyConflictError(CatDogError):
    reason = "idempotency_conflict"


class InferenceFailedError(CatDogError):
    reason = "inference_failed"


# Most specific first: the first class in an error's MRO found here decides its status.
STATUS_BY_ERROR: dict[type[CatDogError], int] = {
    DecompressionBombError: 422,
    InvalidImageError: 422,
    MissingFieldError: 422,
    InvalidFieldError: 422,
    MalformedRequestError: 422,
    UnsupportedMediaTypeError: 415,
    ImageTooLargeError: 413,
    TooManyFilesError: 413,
    RequestTooLargeError: 413,
    JobNotFoundError: 404,
    PredictionNotFoundError: 404,
    JobExpiredError: 410,
    JobFinishedError: 409,
    IdempotencyConflictError: 409,
    FeedbackConflictError: 409,
    QueueFullError: 429,
    ModelNotAvailableError: 503,
    NoWorkerError: 503,
    BrokerUnavailableError: 503,
    PredictTimeoutError: 504,
    InferenceFailedError: 500,
}

# Errors a worker reports for a /predict, by reason, rebuilt as exceptions in the gateway.
_ERROR_BY_REASON: dict[str, type[CatDogError]] = {
    "decompression_bomb": DecompressionBombError,
    "unsupported_media_type": UnsupportedMediaTypeError,
    "too_large": ImageTooLargeError,
    "model_not_available": ModelNotAvailableError,
}


def status_for(exc: CatDogError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_from_reply(error: dict[str, Any]) -> CatDogError:
    """The exception for a worker's `{"reason", "message"}` answer."""
    reason = str(error.get("reason", "inference_failed"))
    message = str(error.get("message", "the worker could not classify the image"))
    if reason in _ERROR_BY_REASON:
        return _ERROR_BY_REASON[reason](message, reason=reason)
    if reason == "inference_failed":
        return InferenceFailedError(message)
    return InvalidImageError(message, reason=reason)  # empty, truncated, not_an_image, ...


def error_body(detail: str, reason: str) -> dict[str, str]:
    return {"detail": detail, "reason": reason}


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CatDogError)
    status = status_for(exc)
    headers = {}
    if isinstance(exc, QueueFullError):
        headers["Retry-After"] = str(exc.retry_after_s)
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


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors())
    where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in errors)
    return JSONResponse(
        {"detail": f"invalid request: {where}", "reason": "validation_error", "errors": errors},
        status_code=422,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CatDogError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for infrastructure in (redis.ConnectionError, redis.TimeoutError, OperationalError):
        app.add_exception_handler(infrastructure, _infrastructure_error)
