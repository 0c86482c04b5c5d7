"""Feedback on the live local stack: the true labels of served predictions (a /predict answer
by its request id, a job item by job id and index) move the live accuracy gauge of the model
version that answered, next to its test-set accuracy from MLflow and the drift between them."""

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import MODEL_NAME, MODEL_VERSION, OFFLINE_METRICS
from tests.integration.processes import Stack, all_items, scrape, total, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MODEL = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION}
OTHER = {"cat": "dog", "dog": "cat"}


def _quality(stack: Stack) -> tuple[float, float, float]:
    """(live accuracy, feedback window size, accuracy drift) of the fixture model."""
    samples = scrape(f"{stack.url}/metrics")
    return (
        total(samples, "catdog_quality_accuracy_ratio", **MODEL, source="live"),
        total(samples, "catdog_quality_window_samples", **MODEL, window="feedback"),
        total(samples, "catdog_quality_drift_ratio", **MODEL, signal="accuracy"),
    )


def _feedback(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/feedback", json=body)


def test_feedback_moves_the_live_accuracy_gauge_of_the_version_that_answered(
    stack: Stack, client: httpx.Client, photo_dir: Path
) -> None:
    kaggle = photo_dir / "kaggle"
    answers = []
    for name in ("cat.20.jpg", "dog.20.jpg"):
        with (kaggle / name).open("rb") as photo:
            response = client.post("/predict", files={"file": (name, photo)})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    photo_bytes = (kaggle / "cat.21.jpg").read_bytes()
    job = client.post("/jobs", files=[("files", ("cat.21.jpg", photo_bytes, "image/jpeg"))])
    assert job.status_code == 202, job.text
    job_id = job.json()["job_id"]
    assert wait_for_job(client, job_id)["status"] == "succeeded"
    item = all_items(client, job_id)[0]

    # Other tests may have given feedback on this version already: start from its window.
    accuracy_before, window_before, _ = _quality(stack)
    right = [
        _feedback(client, prediction_id=answers[0]["prediction_id"], label=answers[0]["label"]),
        _feedback(client, job_id=job_id, index=0, label=item["label"]),
    ]
    wrong = _feedback(
        client, prediction_id=answers[1]["prediction_id"], label=OTHER[answers[1]["label"]].upper()
    )
    for response in [*right, wrong]:
        assert response.status_code == 200, response.text
        assert response.json()["counted"] is True
        assert response.json()["model"] == {"name": MODEL_NAME, "version": MODEL_VERSION}
    assert [r.json()["correct"] for r in [*right, wrong]] == [True, True, False]
    assert right[1].json()["prediction"] == f"job:{job_id}:0"

    accuracy, window, drift = _quality(stack)
    expected = (accuracy_before * window_before + 2) / (window_before + 3)
    assert window == window_before + 3
    assert accuracy == pytest.approx(expected)
    if window_before == 0:
        assert accuracy == pytest.approx(2 / 3)
    assert wrong.json()["window_accuracy"] == pytest.approx(expected)
    assert drift == pytest.approx(accuracy - OFFLINE_METRICS["accuracy"])
    samples = scrape(f"{stack.url}/metrics")
    offline = total(samples, "catdog_quality_accuracy_ratio", **MODEL, source="offline")
    assert offline == OFFLINE_METRICS["accuracy"]
    assert total(samples, "catdog_gateway_feedback_total", **MODEL, outcome="wrong") >= 1


def test_feedback_is_counted_once_and_a_different_label_is_a_conflict(
    stack: Stack, client: httpx.Client, photo_dir: Path
) -> None:
    with (photo_dir / "kaggle" / "dog.22.jpg").open("rb") as photo:
        answer = client.post("/predict", files={"file": ("dog.22.jpg", photo)}).json()
    prediction_id, label = answer["prediction_id"], answer["label"]
    assert _feedback(client, prediction_id=prediction_id, label=label).json()["counted"] is True
    _, window_before, _ = _quality(stack)

    again = _feedback(client, prediction_id=prediction_id, label=label)
    assert (again.status_code, again.json()["counted"]) == (200, False)
    conflict = _feedback(client, prediction_id=prediction_id, label=OTHER[label])
    assert (conflict.status_code, conflict.json()["reason"]) == (409, "feedback_conflict")
    assert _quality(stack)[1] == window_before  # neither moved the window


def test_feedback_on_an_unknown_prediction_is_404_and_a_bad_body_422(client: httpx.Client) -> None:
    unknown = _feedback(client, prediction_id="0" * 32, label="cat")
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "prediction_not_found")
    missing_job = _feedback(client, job_id="nosuchjob", index=0, label="dog")
    assert (missing_job.status_code, missing_job.json()["reason"]) == (404, "prediction_not_found")
    horse = _feedback(client, prediction_id="0" * 32, label="horse")
    assert (horse.status_code, horse.json()["reason"]) == (422, "validation_error")
