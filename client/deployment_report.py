"""What `catdog evaluate-deployment` computes and writes, as pure functions of the answers
(no HTTP, no MLflow): the live answers scored by common.classification, the very metrics the
offline evaluate stage logs (`accuracy`, `f1_macro`, `recall_cat`, ...), latency percentiles,
the comparison with the offline test metrics, the gate and the markdown report.

Plain Python, no numpy or scikit-learn, so it runs wherever the client does.
"""

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import classification
from common.classification import Scored
from common.labels import CLASSES

PERCENTILES = (50, 90, 95, 99)
# Compared with the offline test set, in this order (offline names without `test_`).
COMPARED = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    *(f"{m}_{c}" for c in CLASSES for m in ("precision", "recall", "f1")),
    "roc_auc",
    "ece",
    "mean_confidence",
    "predicted_cat_share",
)


@dataclass(frozen=True)
class Outcome:
    """One labelled photo and what the live API said about it."""

    filename: str
    actual: str
    predicted: str | None = None
    probability: float | None = None  # of `predicted`
    p_dog: float | None = None
    model_name: str | None = None
    model_version: str | None = None
    error: str | None = None  # the item's error reason when it failed

    @property
    def classified(self) -> bool:
        return self.predicted is not None


def outcome_from_item(filename: str, actual: str, item: Mapping[str, Any]) -> Outcome:
    """An Outcome from one job item of GET /jobs/{id} (`results.items[]`)."""
    if item.get("status") != "succeeded":
        error = item.get("error") or {}
        return Outcome(filename, actual, error=str(error.get("reason") or item.get("status")))
    probabilities = item.get("probabilities") or {}
    model = item.get("model") or {}
    return Outcome(
        filename,
        actual,
        predicted=str(item["label"]),
        probability=float(item["probability"]),
        p_dog=float(probabilities["dog"]) if "dog" in probabilities else None,
        model_name=model.get("name"),
        model_version=model.get("version"),
    )


# --- classification ---------------------------------------------------------------------------


def scored(outcomes: Sequence[Outcome]) -> list[Scored]:
    """The classified outcomes, in the form common.classification scores."""
    return [
        Scored(
            CLASSES.index(o.actual),
            CLASSES.index(o.predicted),
            o.probability or 0.0,
            o.p_dog,
        )
        for o in outcomes
        if o.predicted in CLASSES
    ]


def confusion_matrix(outcomes: Sequence[Outcome]) -> list[list[int]]:
    """Counts of classified outcomes: rows are the actual label, columns the predicted one."""
    return classification.confusion_matrix(scored(outcomes))


def classification_metrics(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """`sent`, `failed` and `error_rate` over every photo sent, then the metrics of the
    classified ones, named like the offline test metrics."""
    done = scored(outcomes)
    failed = len(outcomes) - len(done)
    out: dict[str, float] = {
        "sent": float(len(outcomes)),
        "failed": float(failed),
        "error_rate": failed / len(outcomes) if outcomes else 0.0,
        "n": float(len(done)),
    }
    return out | classification.classification_metrics(done) if done else out


def errors_by_reason(outcomes: Sequence[Outcome]) -> dict[str, int]:
    return dict(Counter(o.error or "unknown" for o in outcomes if not o.classified).most_common())


def versions_seen(outcomes: Sequence[Outcome]) -> Counter[tuple[str, str]]:
    """(model name, version) -> classified items it answered."""
    return Counter((o.model_name or "", o.model_version or "") for o in outcomes if o.classified)


# --- latency -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    out = {"n": float(len(values_ms))}
    out |= {f"p{q}": percentile(values_ms, q) for q in PERCENTILES}
    if values_ms:
        out["mean"] = sum(values_ms) / len(values_ms)
        out["max"] = max(values_ms)
    return out


# --- comparison and gate -----------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRow:
    metric: str
    live: float | None
    offline: float | None

    @property
    def delta(self) -> float | None:
        if self.live is None or self.offline is None:
            return None
        return self.live - self.offline


def compare(live: Mapping[str, float], offline: Mapping[str, float] | None) -> list[ComparisonRow]:
    offline = offline or {}
    return [
        ComparisonRow(m, live.get(m), offline.get(m)) for m in COMPARED if m in live or m in offline
    ]


def gate(metrics: Mapping[str, float], min_accuracy: float, max_error_rate: float) -> list[str]:
    """Why the deployment fails the gate; empty when it passes."""
    failures = []
    if metrics.get("n", 0) == 0:
        failures.append("no photo was classified")
    elif metrics["accuracy"] < min_accuracy:
        failures.append(f"accuracy {metrics['accuracy']:.4f} is below {min_accuracy:.4f}")
    if metrics.get("error_rate", 0.0) > max_error_rate:
        failures.append(
            f"{metrics['error_rate']:.2%} of the photos failed (at most {max_error_rate:.2%})"
        )
    return failures


# --- the report ----------------------------------------------------------------------------


@dataclass
class DeploymentReport:
    url: str
    data: str
    evaluated_at: str
    labels: dict[str, int]  # photos sent per true label
    metrics: dict[str, float]
    matrix: list[list[int]]
    min_accuracy: float
    max_error_rate: float
    failures: list[str]
    model_name: str | None = None
    model_version: str | None = None
    versions: dict[str, int] = field(default_factory=dict)  # "name vN" -> items
    offline: dict[str, float] | None = None
    offline_run_id: str | None = None
    offline_note: str | None = None
    predict_latency_ms: dict[str, float] = field(default_factory=dict)
    server_latency_ms: dict[str, float] = field(default_factory=dict)
    predict_failures: int = 0
    jobs: int = 0
    job_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    mlflow_note: str | None = None
    confusion_png: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    def comparison(self) -> list[ComparisonRow]:
        return compare(self.metrics, self.offline)


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.4f}"


def render_markdown(r: DeploymentReport) -> str:
    model = f"{r.model_name} version {r.model_version}" if r.model_version else "unknown"
    sent = int(r.metrics.get("sent", 0))
    lines = [
        f"# Deployment evaluation: {model}: {'PASS' if r.passed else 'FAIL'}",
        "",
        f"- Service: {r.url}, evaluated {r.evaluated_at}",
        f"- Data: `{r.data}`: {sent} labelled photos ("
        + ", ".join(f"{n} {label}" for label, n in sorted(r.labels.items()))
        + ")",
        f"- Model that answered: {model}",
    ]
    if len(r.versions) > 1:
        mix = ", ".join(f"{v}: {n} items" for v, n in r.versions.items())
        lines.append(f"- WARNING: several model versions answered ({mix}); compared with {model}")
    lines.append(
        f"- Gate: accuracy >= {r.min_accuracy:.4f} and at most {r.max_error_rate:.2%} failed"
        f" photos: {'passed' if r.passed else 'FAILED: ' + '; '.join(r.failures)}"
    )
    lines += ["", "## Classification: live API against the offline test set", ""]
    if r.offline_note:
        lines += [f"Offline metrics: {r.offline_note}", ""]
    elif r.offline_run_id:
        lines += [f"Offline metrics: test set of training run `{r.offline_run_id}`.", ""]
    lines += ["| metric | live | offline test | live - offline |", "| --- | ---: | ---: | ---: |"]
    lines += [
        f"| {row.metric} | {_num(row.live)} | {_num(row.offline)} | {_signed(row.delta)} |"
        for row in r.comparison()
    ]
    lines += [
        "",
        f"Classified {int(r.metrics.get('n', 0))} of {sent} photos;"
        f" {int(r.metrics.get('failed', 0))} failed.",
        "",
        "## Confusion matrix",
        "",
    ]
    if r.confusion_png:
        lines += [f"![confusion matrix]({r.confusion_png})", ""]
    lines += [
        "| actual \\ predicted | " + " | ".join(CLASSES) + " |",
        "| --- | " + " | ".join("---:" for _ in CLASSES) + " |",
    ]
    lines += [
        f"| {label} | " + " | ".join(str(n) for n in row) + " |"
        for label, row in zip(CLASSES, r.matrix, strict=True)
    ]
    lines += ["", "## Latency", ""]
    lines += _latency_lines(r)
    if r.errors:
        lines += ["", "## Failed photos by reason", "", "| reason | photos |", "| --- | ---: |"]
        lines += [f"| {reason} | {n} |" for reason, n in r.errors.items()]
    lines += ["", "## MLflow", "", r.mlflow_note or "not logged", ""]
    return "\n".join(lines)


def _latency_lines(r: DeploymentReport) -> list[str]:
    head = ["| /predict, ms | n | " + " | ".join(f"p{q}" for q in PERCENTILES) + " | mean | max |"]
    head.append("| --- | ---: | " + " | ".join("---:" for _ in PERCENTILES) + " | ---: | ---: |")
    rows = []
    for name, summary in (
        ("client round trip", r.predict_latency_ms),
        ("gateway (latency_ms)", r.server_latency_ms),
    ):
        if summary.get("n"):
            cells = [_num(summary.get(f"p{q}"), 1) for q in PERCENTILES]
            rows.append(
                f"| {name} | {int(summary['n'])} | "
                + " | ".join(cells)
                + f" | {_num(summary.get('mean'), 1)} | {_num(summary.get('max'), 1)} |"
            )
    lines = head + rows if rows else ["No /predict latency sample was taken."]
    if r.predict_failures:
        lines.append(f"\n{r.predict_failures} /predict calls of the sample failed.")
    sent = r.metrics.get("sent", 0)
    if r.job_seconds > 0:
        lines += [
            "",
            f"Bulk: {int(sent)} photos in {r.jobs} job(s), {r.job_seconds:.1f} s from the"
            f" first upload to the last result ({sent / r.job_seconds:.1f} photos/s).",
        ]
    return lines
