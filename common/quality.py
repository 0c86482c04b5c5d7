"""Live-quality records in Redis: what each served prediction said, the feedback people gave,
and sliding windows per model version. Shared by the gateway (asyncio client: POST /feedback,
the gauges) and the workers (blocking client: /predict answers, with their reply, and bulk
job items).

Key layout (every key starts with `catdog:quality:`; `{key}` is a prediction key, see
`prediction_key`; `{model}` is `name:version`):

    pred:{key}          hash    label, probability, model_name, model_version, created_at, owner
    feedback:{key}      string  the true label given for that prediction (set once)
    models              zset    JSON [name, version] -> last time it served or got feedback
    predictions:{model} list    newest first, "label probability", the last `window` answers
    outcomes:{model}    list    newest first, "1" (right) or "0" (wrong), the last `window`

Records and feedback markers expire after `ttl_s`; the windows are trimmed, never expired,
so a quiet model keeps its last numbers. Torch-free; never stores image bytes.
"""

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from common.labels import CLASSES
from common.store.ops import Op
from common.wire import ItemResult, ModelRef

PREFIX = "catdog:quality"

Pipeline = redis.client.Pipeline | aioredis.client.Pipeline


@dataclass(frozen=True)
class QualityConfig:
    window: int = 500  # feedback outcomes and predictions kept per model version
    record_ttl_s: int = 7 * 24 * 3600  # how long a prediction can still receive feedback
    reference_ttl_s: float = 600.0  # how long offline metrics (or their absence) are cached
    max_models: int = 5  # model versions exported as gauges, most recently seen first
    mlflow_timeout_s: float = 3.0

    @classmethod
    def from_settings(cls, settings: Any) -> "QualityConfig":
        """From `quality_*` settings where they exist, else these defaults."""
        d = cls()
        return cls(
            window=int(getattr(settings, "quality_window", d.window)),
            record_ttl_s=int(getattr(settings, "quality_record_ttl_s", d.record_ttl_s)),
            reference_ttl_s=float(getattr(settings, "quality_reference_ttl_s", d.reference_ttl_s)),
            max_models=int(getattr(settings, "quality_max_models", d.max_models)),
            mlflow_timeout_s=d.mlflow_timeout_s,
        )


@dataclass(frozen=True)
class PredictionRecord:
    key: str
    label: str
    probability: float  # of `label`, the winning class
    model: ModelRef
    created_at: float = 0.0
    owner: str = ""  # the API key it answered; only that key may give feedback on it


@dataclass(frozen=True)
class WindowStats:
    outcomes: list[bool]  # newest first
    predictions: list[tuple[str, float]]  # newest first: (label, winning probability)

    @property
    def accuracy(self) -> float | None:
        return sum(self.outcomes) / len(self.outcomes) if self.outcomes else None

    @property
    def cat_share(self) -> float | None:
        if not self.predictions:
            return None
        return sum(label == "cat" for label, _ in self.predictions) / len(self.predictions)

    @property
    def mean_probability(self) -> float | None:
        if not self.predictions:
            return None
        return sum(p for _, p in self.predictions) / len(self.predictions)


class Keys:
    models = f"{PREFIX}:models"

    @staticmethod
    def record(key: str) -> str:
        return f"{PREFIX}:pred:{key}"

    @staticmethod
    def feedback(key: str) -> str:
        return f"{PREFIX}:feedback:{key}"

    @staticmethod
    def predictions(model: ModelRef) -> str:
        return f"{PREFIX}:predictions:{model.name}:{model.version}"

    @staticmethod
    def outcomes(model: ModelRef) -> str:
        return f"{PREFIX}:outcomes:{model.name}:{model.version}"


def prediction_key(
    prediction_id: str | None = None, job_id: str | None = None, index: int | None = None
) -> str:
    """`predict:<prediction id>` for a /predict answer (the id the server made and returned,
    never one a client chose), `job:<job id>:<index>` for a job item."""
    if prediction_id and job_id is None and index is None:
        return f"predict:{prediction_id}"
    if job_id and index is not None and prediction_id is None:
        return f"job:{job_id}:{index}"
    raise ValueError("name a prediction by prediction_id alone, or by job_id and index")


def check_label(label: str) -> str:
    normalised = label.strip().lower()
    if normalised not in CLASSES:
        raise ValueError(f"label must be one of {', '.join(CLASSES)}, not {label!r}")
    return normalised


# --- writing (both clients) ------------------------------------------------------------------


def buffer_records(
    pipe: Pipeline, records: Iterable[PredictionRecord], ttl_s: int, window: int
) -> None:
    now = time.time()
    for record in records:
        key = Keys.record(record.key)
        pipe.hset(
            key,
            mapping={
                "label": record.label,
                "probability": repr(float(record.probability)),
                "model_name": record.model.name,
                "model_version": record.model.version,
                "created_at": repr(record.created_at or now),
                "owner": record.owner,
            },
        )
        pipe.expire(key, ttl_s)
        pipe.lpush(Keys.predictions(record.model), f"{record.label} {record.probability:.6f}")
        pipe.ltrim(Keys.predictions(record.model), 0, window - 1)
        pipe.zadd(Keys.models, {record.model.member(): now})


def job_item_records(
    job_id: str, results: Iterable[ItemResult], owner: str = ""
) -> list[PredictionRecord]:
    """Records for the job items that got a prediction (failed items have none)."""
    return [
        PredictionRecord(
            prediction_key(job_id=job_id, index=r.index),
            r.prediction.label,
            r.prediction.probability,
            r.prediction.model,
            owner=owner,
        )
        for r in results
        if r.prediction is not None
    ]


def record_predictions(records: Sequence[PredictionRecord], *, ttl_s: int, window: int) -> Op[Any]:
    """Store records and add them to their model's window (job items)."""

    def send(client: Any) -> Any:
        if not records:
            return []
        pipe = client.pipeline(transaction=False)
        buffer_records(pipe, records, ttl_s, window)
        return pipe.execute()

    return Op(send)


# --- reading and feedback (gateway) ----------------------------------------------------------


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def load_record(client: aioredis.Redis, key: str) -> PredictionRecord | None:
    raw = await client.hgetall(Keys.record(key))
    if not raw:
        return None
    fields = {_text(k): _text(v) for k, v in raw.items()}
    return PredictionRecord(
        key=key,
        label=fields["label"],
        probability=float(fields["probability"]),
        model=ModelRef(fields["model_name"], fields["model_version"]),
        created_at=float(fields.get("created_at", 0.0)),
        owner=fields.get("owner", ""),
    )


async def claim_feedback(client: aioredis.Redis, key: str, label: str, ttl_s: int) -> str | None:
    """Mark `key` as answered with `label`. None when this call marked it; otherwise the
    label an earlier call gave (so a retry is not counted twice)."""
    if await client.set(Keys.feedback(key), label, nx=True, ex=ttl_s):
        return None
    earlier = await client.get(Keys.feedback(key))
    return _text(earlier) if earlier is not None else label


async def push_outcome(client: aioredis.Redis, model: ModelRef, correct: bool, window: int) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.lpush(Keys.outcomes(model), "1" if correct else "0")
    pipe.ltrim(Keys.outcomes(model), 0, window - 1)
    pipe.zadd(Keys.models, {model.member(): time.time()})
    await pipe.execute()


async def recent_models(client: aioredis.Redis, limit: int) -> list[ModelRef]:
    """The `limit` model versions seen most recently, newest first."""
    members = await client.zrevrange(Keys.models, 0, limit - 1)
    return [ModelRef.from_member(m) for m in members if isinstance(m, bytes | str)]


def _prediction(entry: bytes | str) -> tuple[str, float]:
    label, probability = _text(entry).split(" ", 1)
    return label, float(probability)


async def window_stats(client: aioredis.Redis, model: ModelRef) -> WindowStats:
    pipe = client.pipeline(transaction=False)
    pipe.lrange(Keys.outcomes(model), 0, -1)
    pipe.lrange(Keys.predictions(model), 0, -1)
    outcomes, predictions = await pipe.execute()
    return WindowStats(
        outcomes=[_text(o) == "1" for o in outcomes],
        predictions=[_prediction(p) for p in predictions],
    )
