"""What `catdog evaluate-deployment` computes and writes, as pure functions of the answers
(no HTTP, no MLflow): classification metrics with the names the offline evaluate stage logs
(`accuracy`, `f1_macro`, `recall_cat`, ...), the confusion matrix, latency percentiles, the
comparison with the offline test metrics, the gate, the markdown report and its PNG.

Plain Python, no numpy or scikit-learn, so it runs wherever the client does; matplotlib is
used for the PNG when it is installed.
"""

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.labels import CLASSES

# The offline evaluate stage uses params.yaml's evaluate.calibration_bins (15).
CALIBRATION_BINS = 15
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


# --- classification --------------------------------------------------------------------------


def confusion_matrix(outcomes: Sequence[Outcome]) -> list[list[int]]:
    """Counts of classified outcomes: rows are the actual label, columns the predicted one,
    both in `CLASSES` order."""
    matrix = [[0] * len(CLASSES) for _ in CLASSES]
    for o in outcomes:
        if o.predicted in CLASSES:
            matrix[CLASSES.index(o.actual)][CLASSES.index(o.predicted)] += 1
    return matrix


def roc_auc(positive: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN with one class."""
    pos = [s for p, s in zip(positive, scores, strict=True) if p]
    neg = [s for p, s in zip(positive, scores, strict=True) if not p]
    if not pos or not neg:
        return float("nan")
    ranked = sorted(scores)
    # Mid-rank of each distinct score, 1-based.
    ranks: dict[float, float] = {}
    for score, group in itertools.groupby(enumerate(ranked, start=1), key=lambda t: t[1]):
        positions = [i for i, _ in group]
        ranks[score] = sum(positions) / len(positions)
    u = sum(ranks[s] for s in pos) - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def expected_calibration_error(
    correct: Sequence[bool], confidence: Sequence[float], bins: int = CALIBRATION_BINS
) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size
    (the same definition as training.metrics)."""
    n = len(confidence)
    if n == 0:
        return float("nan")
    ece = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidence) if low < c <= high]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            conf = sum(confidence[i] for i in members) / len(members)
            ece += len(members) / n * abs(acc - conf)
    return ece


def classification_metrics(
    outcomes: Sequence[Outcome], bins: int = CALIBRATION_BINS
) -> dict[str, float]:
    """Metrics over the classified outcomes, named like the offline test metrics, plus
    `sent`, `failed` and `error_rate` over every photo sent."""
    done = [o for o in outcomes if o.classified]
    out: dict[str, float] = {
        "sent": float(len(outcomes)),
        "failed": float(len(outcomes) - len(done)),
        "error_rate": (len(outcomes) - len(done)) / len(outcomes) if outcomes else 0.0,
        "n": float(len(done)),
    }
    if not done:
        return out
    matrix = confusion_matrix(done)
    correct = [o.predicted == o.actual for o in done]
    out["accuracy"] = sum(correct) / len(done)
    precisions, recalls, f1s = [], [], []
    for i, name in enumerate(CLASSES):
        tp = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out |= {
            f"precision_{name}": precision,
            f"recall_{name}": recall,
            f"f1_{name}": f1,
            f"support_{name}": float(support),
        }
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
    out["precision_macro"] = sum(precisions) / len(CLASSES)
    out["recall_macro"] = sum(recalls) / len(CLASSES)
    out["f1_macro"] = sum(f1s) / len(CLASSES)
    scored = [o for o in done if o.p_dog is not None]
    out["roc_auc"] = roc_auc([o.actual == "dog" for o in scored], [o.p_dog or 0.0 for o in scored])
    confidences = [o.probability or 0.0 for o in done]
    out["ece"] = expected_calibration_error(correct, confidences, bins)
    out["mean_confidence"] = sum(confidences) / len(done)
    out["predicted_cat_share"] = sum(o.predicted == "cat" for o in done) / len(done)
    return out


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


def plot_confusion_matrix(matrix: list[list[int]], path: Path, title: str) -> bool:
    """Write the PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    peak = max(max(row) for row in matrix) or 1
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues", vmin=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            color = "white" if count > peak / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=14)
    ax.set_xticks(range(len(CLASSES)), CLASSES)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
