"""The one table from domain errors to HTTP statuses, and worker replies back to errors."""

import pytest

from common import errors
from common.errors import (
    BrokerUnavailableError,
    CatDogError,
    DecompressionBombError,
    IdempotencyConflictError,
    ImageTooLargeError,
    InferenceFailedError,
    InvalidImageError,
    JobExpiredError,
    JobFinishedError,
    JobNotFoundError,
    MissingFieldError,
    ModelNotAvailableError,
    NoWorkerError,
    PredictTimeoutError,
    QueueFullError,
    RequestTooLargeError,
    TooManyFilesError,
    UnsupportedMediaTypeError,
    error_for_reason,
)
from gateway.errors import STATUS_BY_ERROR, status_for

# Families, never raised themselves.
BASES = {CatDogError, errors.RetryLaterError}
# Raised where no HTTP request is being answered: in training, or inside a worker's retries.
NOT_HTTP = {errors.DataSourceError, errors.CallbackError, errors.OfflineMetricsUnavailableError}


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
        (errors.UnauthorizedError("x"), 401),
        (errors.RateLimitedError("x", retry_after_s=1), 429),
        (errors.TooManyJobsError("x", retry_after_s=1), 429),
        (errors.ByteBudgetError("x", retry_after_s=1), 429),
        (errors.CallbackRefusedError("x"), 422),
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
    error = error_for_reason(reason, "why")
    assert type(error) is cls
    assert (error.reason, error.message, status_for(error)) == (reason, "why", status)


def _domain_errors() -> list[type[CatDogError]]:
    return [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, CatDogError) and cls not in BASES
    ]


def test_every_domain_error_an_answer_can_carry_has_a_status() -> None:
    unmapped = {cls for cls in _domain_errors() if cls not in STATUS_BY_ERROR} - NOT_HTTP
    assert unmapped == set()


def test_reasons_are_unique_so_a_worker_reply_names_one_error() -> None:
    reasons = [cls.reason for cls in _domain_errors()]
    assert len(reasons) == len(set(reasons))


def test_a_validation_error_says_where_and_what_without_echoing_the_input() -> None:
    from typing import Annotated

    from fastapi import FastAPI, Header, Query
    from fastapi.testclient import TestClient

    from gateway.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/page")
    def page(
        offset: Annotated[int, Query(ge=0)] = 0,
        key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=8)] = None,
    ) -> dict[str, int]:
        return {"offset": offset}

    response = TestClient(app).get(
        "/page", params={"offset": -1}, headers={"Idempotency-Key": "k" * 10_000}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["reason"] == "validation_error"
    assert body["detail"].startswith("invalid request: query parameter offset: Input should be")
    assert "header Idempotency-Key: String should have at most 8 characters" in body["detail"]
    assert "k" * 100 not in response.text  # the 10,000 characters are not sent back


def test_starlettes_own_refusals_carry_a_reason_and_a_body_it_cannot_parse_is_422() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from pydantic import BaseModel

    from gateway.errors import install_error_handlers

    class Body(BaseModel):
        label: str

    app = FastAPI()
    install_error_handlers(app)

    @app.post("/feedback")
    def feedback(body: Body) -> dict[str, str]:
        return {"label": body.label}

    client = TestClient(app)
    not_json = client.post(
        "/feedback", content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
    )
    # FastAPI's own answer to bytes that are not text: 400 {"detail": ...}, with no reason.
    assert (not_json.status_code, not_json.json()["reason"]) == (422, "malformed_request")
    missing = client.get("/nowhere")
    assert (missing.status_code, missing.json()["reason"]) == (404, "not_found")
    wrong_method = client.get("/feedback")
    assert (wrong_method.status_code, wrong_method.json()["reason"]) == (405, "method_not_allowed")
