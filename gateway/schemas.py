"""Request and response bodies, with the examples the OpenAPI page shows."""

from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from common.jobstore import ItemResult, JobPage, JobRecord, JobStatus

_EXAMPLE_TIME = "2025-01-01T12:00:00Z"


def _time(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong, in words")
    reason: str = Field(description="Stable machine-readable code")

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


class ModelInfo(BaseModel):
    name: str
    version: str


class PredictResponse(BaseModel):
    label: Literal["cat", "dog"] | str = Field(description="The more probable class")
    probability: float = Field(ge=0, le=1, description="Probability of `label`")
    probabilities: dict[str, float] = Field(description="Probability of each class")
    model: ModelInfo
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
                    "model": {"name": "catdog", "version": "3"},
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


class ItemErrorOut(BaseModel):
    reason: str
    message: str


class JobItem(BaseModel):
    index: int = Field(description="Position of the file in the upload, from 0")
    filename: str
    status: Literal["pending", "succeeded", "failed"]
    label: str | None = None
    probability: float | None = None
    probabilities: dict[str, float] | None = None
    model: ModelInfo | None = None
    error: ItemErrorOut | None = None

    model_config = ConfigDict(protected_namespaces=())

    @classmethod
    def build(cls, index: int, filename: str, result: ItemResult | None) -> "JobItem":
        if result is None:
            return cls(index=index, filename=filename, status="pending")
        if result.error is not None:
            error = ItemErrorOut(reason=result.error.reason, message=result.error.message)
            return cls(index=index, filename=filename, status="failed", error=error)
        model = ModelInfo(name=result.model_name or "", version=result.model_version or "")
        return cls(
            index=index,
            filename=filename,
            status="succeeded",
            label=result.label,
            probability=result.probability,
            probabilities=result.probabilities,
            model=model,
        )


class ResultsPage(BaseModel):
    offset: int
    limit: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last")
    items: list[JobItem]


class JobSummary(BaseModel):
    job_id: str
    status: JobStatus
    total: int
    done: int = Field(description="Items classified")
    failed: int = Field(description="Items that ended with an error")
    pending: int = Field(description="Items not finished yet")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancelled_at: datetime | None = None
    expires_at: datetime | None = Field(None, description="When the results are deleted")
    callback_status: Literal["retrying", "delivered", "failed"] | None = None

    @classmethod
    def from_record(cls, record: JobRecord) -> Self:
        return cls(**cls._fields(record))

    @staticmethod
    def _fields(record: JobRecord) -> dict[str, Any]:
        return {
            "job_id": record.job_id,
            "status": record.status,
            "total": record.total,
            "done": record.done,
            "failed": record.failed,
            "pending": record.pending,
            "created_at": _time(record.created_at),
            "started_at": _time(record.started_at),
            "finished_at": _time(record.finished_at),
            "cancelled_at": _time(record.cancelled_at),
            "expires_at": _time(record.expires_at),
            "callback_status": record.callback_status,
        }


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
        return cls(**cls._fields(page.record), results=results)


class CancelResponse(JobSummary):
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
    model: ModelInfo | None

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
