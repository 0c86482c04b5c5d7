"""POST /feedback: the true label of a served prediction, for live accuracy per model version."""

from fastapi import APIRouter

from gateway.dependencies import CallerDep
from gateway.monitoring import MetricsDep, QualityDep
from gateway.schemas import ErrorResponse, FeedbackRequest, FeedbackResponse

router = APIRouter(tags=["monitoring"])


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses={
        401: {"model": ErrorResponse, "description": "No API key, or not a valid one"},
        404: {"model": ErrorResponse, "description": "No such prediction on record"},
        409: {"model": ErrorResponse, "description": "Already given a different label"},
        422: {"model": ErrorResponse, "description": "Missing or wrong field"},
    },
)
async def feedback(
    body: FeedbackRequest, caller: CallerDep, quality: QualityDep, metrics: MetricsDep
) -> FeedbackResponse:
    """Give the true label of a served prediction; it moves its model version's live accuracy."""
    outcome = await quality.feedback(body.prediction_key(), body.label, caller.key_id)
    if outcome.counted:
        metrics.observe_feedback(outcome.model.name, outcome.model.version, outcome.correct)
    return FeedbackResponse(
        prediction=outcome.prediction_key,
        predicted=outcome.predicted,
        label=outcome.actual,
        correct=outcome.correct,
        counted=outcome.counted,
        model=outcome.model,
        window_accuracy=outcome.window_accuracy,
        window_size=outcome.window_size,
    )
