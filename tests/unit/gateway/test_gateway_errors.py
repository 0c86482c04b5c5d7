"""The one table from domain errors to HTTP statuses, and worker replies back to errors."""

import pytest

from common.errors import (
    CatDogError,
    DecompressionBombError,
    ImageTooLargeError,
    InvalidImageError,
    ModelNotAvailableError,
    UnsupportedMediaTypeError,
)
from common.jobstore import JobExpiredError, JobFinishedError, JobNotFoundError
from gateway.errors import (
    BrokerUnavailableError,
    IdempotencyConflictError,
    InferenceFailedError,
    MissingFieldError,
    NoWorkerError,
    PredictTimeoutError,
    QueueFullError,
    RequestTooLargeError,
    TooManyFilesError,
    error_from_reply,
    status_for,
)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidImageError("x", reason="truncated"), 422),
        (InvalidImageError("x", reason="empty"), 422),
        (DecompressionBombError("x"), 422),
        (MissingFieldError("x"), 422),
        (UnsupportedMediaTypeError("x"), 415),
        (ImageTooLargeError("x"), 413),
        (TooManyFilesError("x"), 413),
        (RequestTooLargeError("x"), 413),
        (JobNotFoundError("x"), 404),
        (JobExpiredError("x"), 410),
        (JobFinishedError("x"), 409),
        (IdempotencyConflictError("x"), 409),
        (QueueFullError("x", retry_after_s=5), 429),
        (ModelNotAvailableError("x"), 503),
        (NoWorkerError("x"), 503),
        (BrokerUnavailableError("x"), 503),
        (PredictTimeoutError("x"), 504),
        (InferenceFailedError("x"), 500),
    ],
)
def test_each_domain_error_maps_to_its_status(error: CatDogError, status: int) -> None:
    assert status_for(error) == status


def test_an_unmapped_domain_error_is_a_500() -> None:
    assert status_for(CatDogError("unexpected")) == 500


@pytest.mark.parametrize(
    ("reason", "cls", "status"),
    [
        ("truncated", InvalidImageError, 422),
        ("not_an_image", InvalidImageError, 422),
        ("decompression_bomb", DecompressionBombError, 422),
        ("unsupported_media_type", UnsupportedMediaTypeError, 415),
        ("too_large", ImageTooLargeError, 413),
        ("model_not_available", ModelNotAvailableError, 503),
        ("inference_failed", InferenceFailedError, 500),
    ],
)
def test_a_worker_reply_becomes_the_same_error_again(
    reason: str, cls: type[CatDogError], status: int
) -> None:
    error = error_from_reply({"reason": reason, "message": "why"})
    assert type(error) is cls
    assert (error.reason, error.message, status_for(error)) == (reason, "why", status)
