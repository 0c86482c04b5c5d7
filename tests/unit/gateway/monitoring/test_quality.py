"""Live quality in a real Redis: recorded predictions, feedback, sliding-window accuracy per
model version, prediction mix and drift against the offline test set."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import redis
import redis.asyncio as aioredis

from common import quality as q
from common.errors import (
    FeedbackConflictError,
    OfflineMetricsUnavailableError,
    PredictionNotFoundError,
)
from common.offline_metrics import OfflineMetrics
from common.quality import PredictionRecord, QualityConfig
from common.store import jobs
from common.store.jobs import NewJob
from common.store.ops import AsyncStore, Store
from common.wire import Classification, ItemResult, ModelRef
from gateway.monitoring.metrics import GatewayMetrics
from gateway.monitoring.quality import QualityTracker, ReferenceCache

T = TypeVar("T")
V3 = ModelRef("catdog", "3")
V4 = ModelRef("catdog", "4")
OFFLINE_V3 = OfflineMetrics(
    "catdog",
    "3",
    "run-3",
    # 100 cats (recall 0.9) and 100 dogs (recall 0.8): 90 + 20 called cat -> 0.55.
    {
        "accuracy": 0.85,
        "support_cat": 100.0,
        "support_dog": 100.0,
        "recall_cat": 0.9,
        "recall_dog": 0.8,
        "mean_confidence": 0.9,
    },
)


def answer(label: str, probability: float, model: ModelRef) -> Classification:
    other = "dog" if label == "cat" else "cat"
    odds = {label: probability, other: 1 - probability}
    return Classification(label=label, probability=probability, probabilities=odds, model=model)


async def remember(t: QualityTracker, prediction_id: str, found: Classification) -> None:
    """Record a /predict answer as its worker does (with the reply; worker/realtime.py)."""
    key = q.prediction_key(prediction_id=prediction_id)
    record = PredictionRecord(key, found.label, found.probability, found.model)
    await t.store(
        q.record_predictions([record], ttl_s=t.config.record_ttl_s, window=t.config.window)
    )


def with_tracker(
    redis_url: str,
    use: Callable[[QualityTracker], Awaitable[T]],
    config: QualityConfig | None = None,
    references: ReferenceCache | None = None,
) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(redis_url)
        try:
            tracker = QualityTracker(AsyncStore(client), config or QualityConfig(), references)
            return await use(tracker)
        finally:
            await client.aclose()

    return asyncio.run(main())


def offline_lookup(model: ModelRef) -> OfflineMetrics:
    if model == V3:
        return OFFLINE_V3
    raise OfflineMetricsUnavailableError(f"no metrics for {model}")


def test_feedback_on_a_recorded_prediction_moves_its_versions_accuracy(redis_url: str) -> None:
    async def scenario(t: QualityTracker) -> list[float | None]:
        for i, label in enumerate(["cat", "cat", "dog", "dog"]):
            await remember(t, f"r{i}", answer(label, 0.9, V3))
        seen = []
        for i, truth in enumerate(["cat", "dog", "dog", "dog"]):
            seen.append(
                (await t.feedback(q.prediction_key(prediction_id=f"r{i}"), truth)).window_accuracy
            )
        return seen

    assert with_tracker(redis_url, scenario) == [1.0, 0.5, 2 / 3, 0.75]


def test_repeated_feedback_is_accepted_but_counted_once(redis_url: str) -> None:
    async def scenario(t: QualityTracker) -> tuple[bool, bool, int]:
        await remember(t, "r1", answer("cat", 0.8, V3))
        first = await t.feedback("predict:r1", "Cat")
        again = await t.feedback("predict:r1", "cat")
        return first.counted, again.counted, again.window_size

    assert with_tracker(redis_url, scenario) == (True, False, 1)


def test_feedback_with_a_different_label_the_second_time_is_a_conflict(redis_url: str) -> None:
    async def scenario(t: QualityTracker) -> None:
        await remember(t, "r1", answer("cat", 0.8, V3))
        await t.feedback("predict:r1", "cat")
        await t.feedback("predict:r1", "dog")

    with pytest.raises(FeedbackConflictError):
        with_tracker(redis_url, scenario)


def test_feedback_on_an_unknown_prediction_is_not_found(redis_url: str) -> None:
    with pytest.raises(PredictionNotFoundError):
        with_tracker(redis_url, lambda t: t.feedback("predict:never-served", "cat"))


def test_a_wrong_label_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="cat, dog"):
        with_tracker(redis_url, lambda t: t.feedback("predict:x", "horse"))


def _job_with_items(redis_url: str) -> str:
    store = Store.from_url(redis_url)
    job = NewJob("job1", ["a.jpg", "b.jpg"], [], chunks=1, callback_url=None, request_id=None)
    store(jobs.create(job, ttl_s=60, tombstone_ttl_s=60))
    store(jobs.start_chunk("job1", 0))
    store(
        jobs.complete(
            "job1",
            [
                ItemResult(index=0, prediction=answer("dog", 0.7, V4)),
                ItemResult.failure(1, "truncated", "the image is truncated"),
            ],
        )
    )
    return "job1"


def test_feedback_on_a_job_item_is_found_in_the_job_store(redis_url: str) -> None:
    job_id = _job_with_items(redis_url)
    outcome = with_tracker(
        redis_url, lambda t: t.feedback(q.prediction_key(job_id=job_id, index=0), "cat")
    )
    assert (outcome.predicted, outcome.correct, outcome.model) == ("dog", False, V4)
    assert outcome.window_accuracy == 0.0


def test_feedback_on_a_failed_job_item_is_not_found(redis_url: str) -> None:
    job_id = _job_with_items(redis_url)
    with pytest.raises(PredictionNotFoundError):
        with_tracker(redis_url, lambda t: t.feedback(f"job:{job_id}:1", "cat"))


def test_the_window_keeps_only_the_last_outcomes(redis_url: str) -> None:
    async def scenario(t: QualityTracker) -> tuple[float | None, int]:
        for i in range(5):
            await remember(t, f"r{i}", answer("cat", 0.9, V3))
            await t.feedback(f"predict:r{i}", "dog" if i < 2 else "cat")  # 2 wrong, then 3 right
        outcome = await t.feedback("predict:r4", "cat")
        return outcome.window_accuracy, outcome.window_size

    assert with_tracker(redis_url, scenario, QualityConfig(window=3)) == (1.0, 3)


def test_records_expire_after_their_ttl(redis_url: str) -> None:
    with_tracker(
        redis_url,
        lambda t: remember(t, "r1", answer("cat", 0.9, V3)),
        QualityConfig(record_ttl_s=30),
    )
    ttl = redis.Redis.from_url(redis_url).ttl(q.Keys.record("predict:r1"))
    assert 0 < ttl <= 30


def test_snapshot_compares_the_live_mix_with_the_test_set(redis_url: str) -> None:
    # Job items come from the workers' (blocking) writer, /predict answers from the gateway.
    records = [PredictionRecord(f"job:j:{i}", "cat", 0.6, V3) for i in range(3)]
    Store(redis.Redis.from_url(redis_url))(q.record_predictions(records, ttl_s=60, window=100))
    references = ReferenceCache(offline_lookup, ttl_s=60)

    async def scenario(t: QualityTracker) -> list[q.ModelRef]:
        await remember(t, "r1", answer("dog", 0.8, V3))
        await remember(t, "r2", answer("dog", 0.9, V4))
        await t.feedback("predict:r1", "cat")
        versions = await t.snapshot()
        (v3,) = [v for v in versions if v.model == V3]
        assert v3.live() == {
            "accuracy": 0.0,
            "cat_share": 0.75,
            "mean_probability": pytest.approx(0.65),
        }
        assert v3.offline() == {
            "accuracy": 0.85,
            "cat_share": pytest.approx(0.55),
            "mean_probability": 0.9,
        }
        assert v3.drift() == {
            "accuracy": pytest.approx(-0.85),
            "cat_share": pytest.approx(0.2),
            "mean_probability": pytest.approx(-0.25),
        }
        (v4,) = [v for v in versions if v.model == V4]
        assert v4.reference is None and v4.drift() == {}
        return [v.model for v in versions]

    assert set(with_tracker(redis_url, scenario, references=references)) == {V3, V4}


def test_snapshot_exports_only_the_most_recent_versions(redis_url: str) -> None:
    async def scenario(t: QualityTracker) -> list[ModelRef]:
        for v in range(1, 6):
            await remember(t, f"r{v}", answer("cat", 0.9, ModelRef("catdog", str(v))))
        return [v.model for v in await t.snapshot()]

    models = with_tracker(redis_url, scenario, QualityConfig(max_models=2))
    assert models == [ModelRef("catdog", "5"), ModelRef("catdog", "4")]


def test_the_reference_cache_remembers_misses_until_its_ttl() -> None:
    calls: list[ModelRef] = []
    now = [0.0]

    def lookup(model: ModelRef) -> OfflineMetrics:
        calls.append(model)
        raise OfflineMetricsUnavailableError("MLflow is down")

    cache = ReferenceCache(lookup, ttl_s=60, clock=lambda: now[0])

    async def three_reads() -> None:
        assert await cache.get(V3) is None
        assert await cache.get(V3) is None
        now[0] = 61.0
        assert await cache.get(V3) is None

    asyncio.run(three_reads())
    assert calls == [V3, V3]


def test_quality_gauges_carry_live_offline_and_drift(redis_url: str) -> None:
    async def scenario(t: QualityTracker) -> bytes:
        await remember(t, "r1", answer("cat", 0.9, V3))
        await t.feedback("predict:r1", "cat")
        metrics = GatewayMetrics()
        metrics.set_quality(await t.snapshot())
        return metrics.exposition()[0]

    text = with_tracker(
        redis_url, scenario, references=ReferenceCache(offline_lookup, ttl_s=60)
    ).decode()
    labels = 'model_name="catdog",model_version="3"'
    assert f'catdog_quality_accuracy_ratio{{{labels},source="live"}} 1.0' in text
    assert f'catdog_quality_accuracy_ratio{{{labels},source="offline"}} 0.85' in text
    assert f'catdog_quality_drift_ratio{{{labels},signal="accuracy"}} 0.15' in text
    assert f'catdog_quality_window_samples{{{labels},window="feedback"}} 1.0' in text


def test_worker_recorded_job_items_can_receive_feedback(redis_url: str) -> None:
    results = [
        ItemResult(index=0, prediction=answer("cat", 0.8, V4)),
        ItemResult.failure(1, "truncated", "the image is truncated"),
    ]
    records = q.job_item_records("j9", results)
    assert [r.key for r in records] == ["job:j9:0"]
    Store(redis.Redis.from_url(redis_url))(q.record_predictions(records, ttl_s=60, window=10))
    # No job in the job store: the quality record alone answers.
    outcome = with_tracker(redis_url, lambda t: t.feedback("job:j9:0", "cat"))
    assert (outcome.correct, outcome.model) == (True, V4)


def test_quality_config_reads_quality_settings_when_they_exist() -> None:
    class Settings:
        quality_window = 50
        quality_record_ttl_s = 3600

    config = QualityConfig.from_settings(Settings())
    assert (config.window, config.record_ttl_s) == (50, 3600)
    assert config.max_models == QualityConfig().max_models
