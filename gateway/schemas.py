"""Every request and response body of the API, with the examples the OpenAPI page shows.

The wire types the workers share (`common.wire`) appear here as they are: a job summary or a
model reference has one definition for Redis, callbacks and HTTP.
"""

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common import quality as q
from common.store.jobs import JobPage, JobRecord
from common.wire import ItemError, ItemResult, JobStatus, JobSummary, ModelRef

_EXAMPLE_TIME = "2025-01-01T12:00:00Z"


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong, in words")
    reason: str = Field(description="Stable machine-readable code")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="With reason `validation_error`: each field that is wrong"
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": "the image could not be decoded: image file is truncated",
                    "reason": "truncated",
                }
            ]
        }
    )


class PredictResponse(BaseModel):
    label: Literal["cat", "dog"] | str = Field(description="The more probable class")
    probability: float = Field(ge=0, le=1, description="Probability of `label`")
    probabilities: dict[str, float] = Field(description="Probability of each class")
    pet_probability: float | None = Field(
        default=None, description="How much the photo looks like a cat or a dog at all"
    )
    pet_detected: bool | None = Field(
        default=None,
        description="False: probably not a cat or a dog (a banner, another animal); null: the "
        "model has no such signal",
    )
    model: ModelRef
    prediction_id: str = Field(description="Names this answer in POST /feedback")
    request_id: str
    latency_ms: float = Field(description="Time in the gateway, from the request to the answer")

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "label": "dog",
                    "probability": 0.973,
                    "probabilities": {"cat": 0.027, "dog": 0.973},
                    "pet_probability": 0.991,
                    "pet_detected": True,
                    "model": {"name": "catdog", "version": "3"},
                    "prediction_id": "0b7e4a6c1f2d4e8a9c3b5d7f9e1a2c4b",
                    "request_id": "9f1c2d3e4b5a",
                    "latency_ms": 41.7,
                }
            ]
        },
    )


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str
    total: int = Field(description="Number of files received")
    created_at: datetime

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "5d0f3c9a8e7b4a1c9d2e6f708192a3b4",
                    "status": "queued",
                    "status_url": "http://127.0.0.1:8000/jobs/5d0f3c9a8e7b4a1c9d2e6f708192a3b4",
                    "total": 240,
                    "created_at": _EXAMPLE_TIME,
                }
            ]
        }
    )


class JobItem(BaseModel):
    index: int = Field(description="Position of the file in the upload, from 0")
    filename: str
    status: Literal["pending", "succeeded", "failed"]
    label: str | None = None
    probability: float | None = None
    probabilities: dict[str, float] | None = None
    pet_probability: float | None = None
    pet_detected: bool | None = None
    model: ModelRef | None = None
    error: ItemError | None = None

    model_config = ConfigDict(protected_namespaces=())

    @classmethod
    def build(cls, index: int, filename: str, result: ItemResult | None) -> "JobItem":
        if result is None:
            return cls(index=index, filename=filename, status="pending")
        if result.prediction is None:
            return cls(index=index, filename=filename, status="failed", error=result.error)
        found = result.prediction
        return cls(
            index=index,
            filename=filename,
            status="succeeded",
            label=found.label,
            probability=found.probability,
            probabilities=found.probabilities,
            pet_probability=found.pet_probability,
            pet_detected=found.pet_detected,
            model=found.model,
        )


class ResultsPage(BaseModel):
    offset: int
    limit: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last")
    items: list[JobItem]


_SUMMARY_EXAMPLE: dict[str, Any] = {
    "job_id": "5d0f3c9a8e7b4a1c9d2e6f708192a3b4",
    "status": "running",
    "total": 3,
    "done": 1,
    "failed": 1,
    "pending": 1,
    "created_at": _EXAMPLE_TIME,
    "started_at": _EXAMPLE_TIME,
    "finished_at": None,
    "cancelled_at": None,
    "expires_at": "2025-01-02T12:00:00Z",
    "callback_status": None,
}


class JobStatusResponse(JobSummary):
    results: ResultsPage

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_SUMMARY_EXAMPLE,
                    "results": {
                        "offset": 0,
                        "limit": 100,
                        "next_offset": None,
                        "items": [
                            {
                                "index": 0,
                                "filename": "rex.jpg",
                                "status": "succeeded",
                                "label": "dog",
                                "probability": 0.97,
                                "probabilities": {"cat": 0.03, "dog": 0.97},
                                "model": {"name": "catdog", "version": "3"},
                                "error": None,
                            },
                            {
                                "index": 1,
                                "filename": "broken.jpg",
                                "status": "failed",
                                "error": {
                                    "reason": "truncated",
                                    "message": "the image could not be decoded: image file is truncated",
                                },
                            },
                            {"index": 2, "filename": "tom.png", "status": "pending"},
                        ],
                    },
                }
            ]
        }
    )

    @classmethod
    def from_page(cls, page: JobPage) -> "JobStatusResponse":
        items = [
            JobItem.build(page.offset + i, name, result)
            for i, (name, result) in enumerate(zip(page.names, page.results, strict=True))
        ]
        end = page.offset + len(items)
        results = ResultsPage(
            offset=page.offset,
            limit=page.limit,
            next_offset=end if end < page.record.total and items else None,
            items=items,
        )
        return cls(**page.record.summary().model_dump(), results=results)


class CancelResponse(JobSummary):
    @classmethod
    def from_record(cls, record: JobRecord) -> Self:
        return cls(**record.summary().model_dump())

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_SUMMARY_EXAMPLE,
                    "status": "cancelled",
                    "cancelled_at": _EXAMPLE_TIME,
                    "finished_at": _EXAMPLE_TIME,
                }
            ]
        }
    )


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class WorkerInfo(BaseModel):
    worker_id: str
    queues: list[str]
    state: str
    device: str
    model: ModelRef | None

    model_config = ConfigDict(protected_namespaces=())


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    detail: str
    workers: list[WorkerInfo] = []

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "detail": "Redis answers and every queue has a worker with a model",
                    "workers": [
                        {
                            "worker_id": "celery@cpu-1:4242",
                            "queues": ["bulk", "realtime"],
                            "state": "ready",
                            "device": "cpu",
                            "model": {"name": "catdog", "version": "3"},
                        }
                    ],
                }
            ]
        }
    )


class FeedbackRequest(BaseModel):
    prediction_id: str | None = Field(
        None, pattern=r"^[0-9a-f]{32}$", description="The `prediction_id` of a /predict answer"
    )
    job_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="A job, with `index`"
    )
    index: int | None = Field(None, ge=0, description="The item's index in the job, from 0")
    label: Literal["cat", "dog"] = Field(description="The true label (any case)")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"prediction_id": "0b7e4a6c1f2d4e8a9c3b5d7f9e1a2c4b", "label": "cat"},
                {"job_id": "5d0f3c9a8e7b4a1c9d2e6f708192a3b4", "index": 3, "label": "dog"},
            ]
        }
    )

    @field_validator("label", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        by_answer = self.prediction_id is not None
        by_item = self.job_id is not None or self.index is not None
        if by_answer == by_item or (by_item and (self.job_id is None or self.index is None)):
            raise ValueError("give either prediction_id, or job_id and index")
        return self

    def prediction_key(self) -> str:
        return q.prediction_key(self.prediction_id, self.job_id, self.index)


class FeedbackResponse(BaseModel):
    prediction: str = Field(
        description="The prediction scored: predict:<prediction_id> or job:<id>:<i>"
    )
    predicted: str = Field(description="What the model answered")
    label: str = Field(description="The true label given")
    correct: bool
    counted: bool = Field(description="False when this repeats feedback already counted")
    model: ModelRef
    window_accuracy: float | None = Field(
        description="Accuracy of this model version over its feedback window"
    )
    window_size: int = Field(description="Feedback outcomes in that window")

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "prediction": "predict:0b7e4a6c1f2d4e8a9c3b5d7f9e1a2c4b",
                    "predicted": "dog",
                    "label": "cat",
                    "correct": False,
                    "counted": True,
                    "model": {"name": "catdog", "version": "3"},
                    "window_accuracy": 0.94,
                    "window_size": 350,
                }
            ]
        },
    )
