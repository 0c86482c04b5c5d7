"""The wire format between the gateway and the workers: every value one side writes to Redis
and the other reads, as typed models with one JSON spelling.

- `ItemResult`: one job item's outcome (a prediction or the error that stopped it), stored
  once per index in the job's results hash.
- `PredictReply`: a worker's answer to one /predict, pushed to the waiting gateway.
- `Heartbeat`: what one model-owning worker process says about itself every few seconds;
  readiness reads it (`common.store.workers.readiness`).
- `JobSummary`: a job without its items, as the API shows it and as callbacks carry it.

Job statuses are spelled here once; the store's Lua scripts are written from `TERMINAL`.
Torch-free.
"""

import json
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A job in one of these has ended: nothing is written to it any more.
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

CallbackStatus = Literal["retrying", "delivered", "failed"]
WorkerState = Literal["loading", "ready", "failed"]


@dataclass(frozen=True, order=True)
class ModelRef:
    """A served model version: the registry name and version (or a checkpoint's)."""

    name: str
    version: str

    def member(self) -> str:
        """Its spelling as a Redis set member."""
        return json.dumps([self.name, self.version])

    @classmethod
    def from_member(cls, raw: bytes | str) -> "ModelRef":
        name, version = json.loads(raw)
        return cls(str(name), str(version))


class Wire(BaseModel):
    """Immutable, and tolerant of fields a newer peer adds (rolling upgrades)."""

    model_config = ConfigDict(frozen=True, extra="ignore", protected_namespaces=())

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Self:
        return cls.model_validate_json(raw)


class ItemError(Wire):
    reason: str = Field(description="Stable machine-readable code")
    message: str = Field(description="What went wrong, in words")


class Classification(Wire):
    """What the model said about one photo."""

    label: str
    probability: float = Field(ge=0, le=1, description="Probability of `label`")
    probabilities: dict[str, float] = Field(description="Probability of each class")
    # The open-set signal (common.ml.open_set); None from a model that has none.
    pet_probability: float | None = Field(
        default=None, ge=0, le=1, description="How much the photo looks like a cat or a dog"
    )
    pet_detected: bool | None = Field(
        default=None, description="False: probably not a cat or a dog; null: model cannot tell"
    )
    model: ModelRef


class ItemResult(Wire):
    """One job item's outcome: `prediction`, or the `error` that stopped it."""

    index: int = Field(exclude=True)  # the results hash field is the index
    prediction: Classification | None = None
    error: ItemError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, index: int, reason: str, message: str) -> Self:
        return cls(index=index, error=ItemError(reason=reason, message=message))

    @classmethod
    def stored(cls, index: int, raw: bytes | str) -> Self:
        return cls.model_validate({**json.loads(raw), "index": index})


class PredictReply(Wire):
    """A worker's answer to one /predict."""

    prediction: Classification | None = None
    error: ItemError | None = None
    worker_latency_ms: float | None = None


class Heartbeat(Wire):
    worker_id: str
    hostname: str
    pid: int
    queues: list[str]
    state: WorkerState
    device: str = "cpu"
    model: ModelRef | None = None
    generation: int = 0
    error: str | None = None
    updated_at: float = Field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        """The one readiness rule for a process: its model is loaded and warm."""
        return self.state == "ready" and self.model is not None

    def serves(self, queue: str) -> bool:
        return self.ready and queue in self.queues


class JobSummary(Wire):
    """A job without its items: what GET /jobs/{id} shows above its results, and the body of
    the job-end callback."""

    job_id: str
    status: JobStatus
    total: int = Field(description="Number of files received")
    done: int = Field(description="Items classified")
    failed: int = Field(description="Items that ended with an error")
    pending: int = Field(description="Items not finished yet")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancelled_at: datetime | None = None
    expires_at: datetime | None = Field(None, description="When the results are deleted")
    callback_status: CallbackStatus | None = None
