"""Live quality: feedback on served predictions, sliding-window accuracy per model version, and
drift of the prediction mix against the served model's offline test-set values.

Nobody at the shelter tells us when the model drifts, so the service measures it itself:

- every /predict answer (and, from the workers, every job item) is recorded in Redis with a
  TTL (`common.quality`), keyed by its request id or by job id and item index;
- `POST /feedback` names one of them and gives the true label; the outcome (right or wrong)
  joins the last `window` outcomes of the model version that answered;
- at every scrape `snapshot()` reads, per recent model version, the window accuracy, the share
  of `cat` answers and the mean winning probability, and the same three numbers from the
  version's test set in MLflow (`common.offline_metrics`), cached for `reference_ttl_s`.

Nothing here imports torch or mlflow (an http tracking URI is read over REST).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from anyio.to_thread import run_sync

from common import quality as q
from common.errors import (
    FeedbackConflictError,
    JobExpiredError,
    JobNotFoundError,
    OfflineMetricsUnavailableError,
    PredictionNotFoundError,
)
from common.offline_metrics import OfflineMetrics, fetch_offline_metrics
from common.quality import PredictionRecord, QualityConfig, WindowStats
from common.store import jobs
from common.store.ops import AsyncStore
from common.wire import ModelRef

log = logging.getLogger(__name__)

# The three signals compared with the test set; also the `signal` label of the drift gauge.
SIGNALS = ("accuracy", "cat_share", "mean_probability")


@dataclass(frozen=True)
class FeedbackOutcome:
    prediction_key: str
    predicted: str
    actual: str
    correct: bool
    counted: bool  # False when this feedback repeats one already counted
    model: ModelRef
    window_accuracy: float | None
    window_size: int


@dataclass(frozen=True)
class VersionQuality:
    model: ModelRef
    stats: WindowStats
    reference: OfflineMetrics | None = None

    def live(self) -> dict[str, float | None]:
        return {
            "accuracy": self.stats.accuracy,
            "cat_share": self.stats.cat_share,
            "mean_probability": self.stats.mean_probability,
        }

    def offline(self) -> dict[str, float | None]:
        ref = self.reference
        if ref is None:
            return dict.fromkeys(SIGNALS)
        return {
            "accuracy": ref.accuracy,
            "cat_share": ref.predicted_cat_share,
            "mean_probability": ref.mean_confidence,
        }

    def drift(self) -> dict[str, float]:
        """live - offline, for each signal both sides have."""
        live, offline = self.live(), self.offline()
        return {
            s: live_value - offline_value
            for s in SIGNALS
            if (live_value := live[s]) is not None and (offline_value := offline[s]) is not None
        }


Lookup = Callable[[ModelRef], OfflineMetrics]


@dataclass
class ReferenceCache:
    """Offline metrics per model version, fetched in a thread and cached (misses too, so an
    unreachable MLflow costs one timeout per `ttl_s`, not one per scrape)."""

    lookup: Lookup
    ttl_s: float
    clock: Callable[[], float] = time.monotonic
    _cache: dict[ModelRef, tuple[float, OfflineMetrics | None]] = field(default_factory=dict)

    @classmethod
    def from_tracking_uri(cls, tracking_uri: str, config: QualityConfig) -> "ReferenceCache":
        def lookup(model: ModelRef) -> OfflineMetrics:
            return fetch_offline_metrics(
                tracking_uri, model.name, model.version, timeout_s=config.mlflow_timeout_s
            )

        return cls(lookup, config.reference_ttl_s)

    async def get(self, model: ModelRef) -> OfflineMetrics | None:
        cached = self._cache.get(model)
        if cached is not None and self.clock() - cached[0] < self.ttl_s:
            return cached[1]
        value: OfflineMetrics | None
        try:
            value = await run_sync(self.lookup, model)
        except OfflineMetricsUnavailableError as exc:
            log.info(
                "no offline metrics to compare with",
                extra={
                    "model_name": model.name,
                    "model_version": model.version,
                    "error": exc.message,
                },
            )
            value = None
        self._cache[model] = (self.clock(), value)
        return value


class QualityTracker:
    def __init__(
        self,
        store: AsyncStore,
        config: QualityConfig,
        references: ReferenceCache | None = None,
    ) -> None:
        self.redis = store.redis
        self.store = store
        self.config = config
        self.references = references

    async def feedback(self, key: str, true_label: str, owner: str = "") -> FeedbackOutcome:
        """Score the prediction `key` against `true_label` and add it to its model's window.

        Raises PredictionNotFoundError, or FeedbackConflictError when it was already given
        a different label; the same label again is accepted and not counted twice."""
        actual = q.check_label(true_label)
        record = await self._find(key, owner)
        earlier = await q.claim_feedback(self.redis, key, actual, self.config.record_ttl_s)
        if earlier is not None and earlier != actual:
            raise FeedbackConflictError(
                f"prediction {key} already received feedback {earlier!r}; it cannot become"
                f" {actual!r}"
            )
        correct = record.label == actual
        if earlier is None:
            await q.push_outcome(self.redis, record.model, correct, self.config.window)
        stats = await q.window_stats(self.redis, record.model)
        log.info(
            "feedback",
            extra={
                "prediction_key": key,
                "label": record.label,
                "actual": actual,
                "correct": correct,
                "counted": earlier is None,
                "model_name": record.model.name,
                "model_version": record.model.version,
            },
        )
        return FeedbackOutcome(
            prediction_key=key,
            predicted=record.label,
            actual=actual,
            correct=correct,
            counted=earlier is None,
            model=record.model,
            window_accuracy=stats.accuracy,
            window_size=len(stats.outcomes),
        )

    async def _find(self, key: str, owner: str) -> PredictionRecord:
        """The prediction `key`, if `owner` made it: another key's is not found."""
        record = await q.load_record(self.redis, key)
        if record is not None and record.owner == owner:
            return record
        if key.startswith("job:"):
            # Job items live in the job store for the job's lifetime even if no quality
            # record was written for them.
            _, job_id, index = key.split(":", 2)
            found = await self._job_item(job_id, int(index), owner)
            if found is not None:
                return found
        raise PredictionNotFoundError(
            f"no prediction {key} is on record (unknown, expired, pending or failed)"
        )

    async def _job_item(self, job_id: str, index: int, owner: str) -> PredictionRecord | None:
        try:
            page = await self.store(jobs.page(job_id, index, 1, owner))
        except (JobNotFoundError, JobExpiredError):
            return None
        result = page.results[0] if page.results else None
        if result is None or result.prediction is None:
            return None
        found = result.prediction
        key = q.prediction_key(job_id=job_id, index=index)
        return PredictionRecord(key, found.label, found.probability, found.model, owner=owner)

    async def snapshot(self) -> list[VersionQuality]:
        """Window numbers and offline references of the most recently seen versions."""
        out = []
        for model in await q.recent_models(self.redis, self.config.max_models):
            stats = await q.window_stats(self.redis, model)
            reference = await self.references.get(model) if self.references else None
            out.append(VersionQuality(model, stats, reference))
        return out
