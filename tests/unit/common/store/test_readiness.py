"""Readiness, the one rule /readyz, the gateway's worker check and the ready-workers gauge
share: every queue needs a live worker process with a loaded model."""

from common.store.workers import readiness as evaluate_readiness
from common.wire import Heartbeat, ModelRef

QUEUES = ["realtime", "bulk"]


def beat(
    worker_id: str, queues: list[str], state: str = "ready", error: str | None = None
) -> Heartbeat:
    model = ModelRef("catdog", "3") if state == "ready" else None
    return Heartbeat(
        worker_id=worker_id,
        hostname="w@h",
        pid=1,
        queues=queues,
        state=state,  # type: ignore[arg-type]
        model=model,
        error=error,
    )


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
