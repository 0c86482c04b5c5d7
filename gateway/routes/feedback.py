"""POST /feedback: the true label of a served prediction, for live accuracy per model version."""

from typing import Literal, Self

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common import quality as q
from gateway.monitoring import MetricsDep, QualityDep
from gateway.quality import FeedbackOutcome
from gateway.schemas import ErrorResponse, ModelInfo

router = APIRouter(tags=["monitoring"])

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class FeedbackRequest(BaseModel):
    request_id: str | None = Field(
        None, pattern=ID_PATTERN, description="The `request_id` of a /predict answer"
    )
    job_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="A job, with `index`"
    )
    index: int | None = Field(None, ge=0, description="The item's index in the job, from 0")
    label: Literal["cat", "dog"] = Field(description="The true label (any case)")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"request_id": "9f1c2d3e4b5a", "label": "cat"},
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
        by_request = self.request_id is not None
        by_item = self.job_id is not None or self.index is not None
        if by_request == by_item or (by_item and (self.job_id is None or self.index is None)):
            raise ValueError("give either request_id, or job_id and index")
        return self

    def prediction_key(self) -> str:
        return q.prediction_key(self.request_id, self.job_id, self.index)


class FeedbackResponse(BaseModel):
    prediction: str = Field(description="The prediction scored: req:<request_id> or job:<id>:<i>")
    predicted: str = Field(description="What the model answered")
    label: str = Field(description="The true label given")
    correct: bool
    counted: bool = Field(description="False when this repeats feedback already counted")
    model: ModelInfo
    window_accuracy: float | None = Field(
        description="Accuracy of this model version over its feedback window"
    )
    window_size: int = Field(description="Feedback outcomes in that window")

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "prediction": "req:9f1c2d3e4b5a",
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

    @classmethod
    def from_outcome(cls, outcome: FeedbackOutcome) -> "FeedbackResponse":
        return cls(
            prediction=outcome.prediction_key,
            predicted=outcome.predicted,
            label=outcome.actual,
            correct=outcome.correct,
            counted=outcome.counted,
            model=ModelInfo(name=outcome.model.name, version=outcome.model.version),
            window_accuracy=outcome.window_accuracy,
            window_size=outcome.window_size,
        )


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses={
        404: {"model": ErrorResponse, "description": "No such prediction on record"},
        409: {"model": ErrorResponse, "description": "Already given a different label"},
        422: {"model": ErrorResponse, "description": "Missing or wrong field"},
    },
)
async def feedback(
    body: FeedbackRequest, quality: QualityDep, metrics: MetricsDep
) -> FeedbackResponse:
    """Give the true label of a served prediction; it moves its model version's live accuracy."""
    outcome = await quality.feedback(body.prediction_key(), body.label)
    if outcome.counted:
        metrics.observe_feedback(outcome.model.name, outcome.model.version, outcome.correct)
    return FeedbackResponse.from_outcome(outcome)
