"""Readiness: every queue needs a live worker process with a loaded model."""

from common.jobstore import Heartbeat
from gateway.services import evaluate_readiness

QUEUES = ["realtime", "bulk"]


def beat(
    worker_id: str, queues: list[str], state: str = "ready", error: str | None = None
) -> Heartbeat:
    version = "3" if state == "ready" else None
    return Heartbeat(worker_id, "w@h", 1, queues, state, model_version=version, error=error)


def test_ready_when_each_queue_has_a_worker_with_a_model() -> None:
    verdict = evaluate_readiness([beat("a", ["realtime"]), beat("b", ["bulk"])], QUEUES)
    assert verdict.ok


def test_not_ready_without_any_worker() -> None:
    verdict = evaluate_readiness([], QUEUES)
    assert not verdict.ok
    assert "'realtime'" in verdict.detail and "'bulk'" in verdict.detail


def test_not_ready_when_a_queue_only_has_a_loading_worker() -> None:
    verdict = evaluate_readiness([beat("a", QUEUES, "loading"), beat("b", ["realtime"])], QUEUES)
    assert not verdict.ok
    assert "'bulk'" in verdict.detail and "'realtime'" not in verdict.detail
    assert "a loading" in verdict.detail


def test_not_ready_names_a_worker_whose_model_failed() -> None:
    verdict = evaluate_readiness([beat("a", QUEUES, "failed", "no checkpoint")], QUEUES)
    assert not verdict.ok
    assert "a failed (no checkpoint)" in verdict.detail
