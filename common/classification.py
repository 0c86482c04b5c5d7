"""Classification metrics and the plots people read them from: one definition for the offline
evaluate stage (training/evaluate.py) and the live deployment report
(client/deployment_report.py), so "live minus offline" compares like with like.

Plain Python on plain sequences: the client runs where neither numpy nor scikit-learn is
installed (requirements/gateway.txt). matplotlib is imported inside the plot functions only,
which return False where it is missing. tests/unit/common/test_classification.py checks the
numbers against scikit-learn.
"""

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.labels import CLASSES

# Part of what "ece" means, not a tunable: the offline and the live ECE are only comparable
# when they use the same bins, so both read this one constant.
CALIBRATION_BINS = 15
# The ROC curve treats "dog" as the positive class: its score is P(dog).
POSITIVE = CLASSES.index("dog")


@dataclass(frozen=True)
class Scored:
    """One classified photo, labels as indices into CLASSES."""

    actual: int
    predicted: int
    confidence: float  # the probability of `predicted`
    p_dog: float | None  # None when the answer did not carry every class's probability

    @property
    def correct(self) -> bool:
        return self.actual == self.predicted


def scored_from_probabilities(
    actual: Sequence[int], probabilities: Sequence[Sequence[float]]
) -> list[Scored]:
    """Scored photos from true labels (N,) and class probabilities (N, C); ties go to the
    lower class index, as numpy's argmax does."""
    scored = []
    for label, row in zip(actual, probabilities, strict=True):
        best = max(range(len(row)), key=row.__getitem__)
        scored.append(Scored(int(label), best, float(row[best]), float(row[POSITIVE])))
    return scored


def confusion_matrix(scored: Sequence[Scored]) -> list[list[int]]:
    """Counts: rows are the actual class, columns the predicted one, both in CLASSES order."""
    matrix = [[0] * len(CLASSES) for _ in CLASSES]
    for s in scored:
        matrix[s.actual][s.predicted] += 1
    return matrix


def roc_curve(scored: Sequence[Scored]) -> tuple[list[float], list[float]]:
    """(false positive rates, true positive rates) at each distinct P(dog) threshold, from
    (0, 0) to (1, 1); photos without P(dog) are left out. Empty when a class is missing."""
    ranked = sorted((s for s in scored if s.p_dog is not None), key=lambda s: -(s.p_dog or 0.0))
    positives = sum(s.actual == POSITIVE for s in ranked)
    negatives = len(ranked) - positives
    if not positives or not negatives:
        return [], []
    fpr, tpr = [0.0], [0.0]
    true_pos = false_pos = 0
    for _, tied in itertools.groupby(ranked, key=lambda s: s.p_dog):
        for s in tied:
            if s.actual == POSITIVE:
                true_pos += 1
            else:
                false_pos += 1
        fpr.append(false_pos / negatives)
        tpr.append(true_pos / positives)
    return fpr, tpr


def roc_auc(scored: Sequence[Scored]) -> float:
    """Area under `roc_curve` (trapezoids, so tied scores count half); NaN with one class."""
    fpr, tpr = roc_curve(scored)
    if not fpr:
        return float("nan")
    return sum(
        (x1 - x0) * (y0 + y1) / 2
        for (x0, y0), (x1, y1) in itertools.pairwise(zip(fpr, tpr, strict=True))
    )


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: int
    confidence: float  # mean confidence of its photos
    accuracy: float  # share of its photos classified right


def calibration_bins(
    scored: Sequence[Scored], bins: int = CALIBRATION_BINS
) -> list[CalibrationBin]:
    """The non-empty ones of `bins` equal-width confidence bins (low, high] over (0, 1]."""
    edges = [b / bins for b in range(bins + 1)]
    members: dict[int, list[Scored]] = {}
    for s in scored:
        index = bisect.bisect_left(edges, s.confidence) - 1  # edges[index] < c <= edges[index+1]
        if 0 <= index < bins:
            members.setdefault(index, []).append(s)
    return [
        CalibrationBin(
            edges[i],
            edges[i + 1],
            len(group),
            sum(s.confidence for s in group) / len(group),
            sum(s.correct for s in group) / len(group),
        )
        for i, group in sorted(members.items())
    ]


def expected_calibration_error(scored: Sequence[Scored], bins: int = CALIBRATION_BINS) -> float:
    """Mean |accuracy - confidence| over the calibration bins, weighted by bin size."""
    if not scored:
        return float("nan")
    return sum(
        b.count / len(scored) * abs(b.accuracy - b.confidence)
        for b in calibration_bins(scored, bins)
    )


def classification_metrics(scored: Sequence[Scored]) -> dict[str, float]:
    """Accuracy, per-class and macro precision/recall/F1 (0 where undefined), ROC AUC (dog
    positive), ECE, and the reference values of the live drift gauges."""
    if not scored:
        raise ValueError("no classified photo to compute metrics on")
    n = len(scored)
    out: dict[str, float] = {"accuracy": sum(s.correct for s in scored) / n, "n": float(n)}
    matrix = confusion_matrix(scored)
    per_class = []
    for i, name in enumerate(CLASSES):
        support, called = sum(matrix[i]), sum(row[i] for row in matrix)
        precision = matrix[i][i] / called if called else 0.0
        recall = matrix[i][i] / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out |= {
            f"precision_{name}": precision,
            f"recall_{name}": recall,
            f"f1_{name}": f1,
            f"support_{name}": float(support),
        }
        per_class.append((precision, recall, f1))
    for j, metric in enumerate(("precision", "recall", "f1")):
        out[f"{metric}_macro"] = sum(scores[j] for scores in per_class) / len(CLASSES)
    out["roc_auc"] = roc_auc(scored)
    out["ece"] = expected_calibration_error(scored)
    out["mean_confidence"] = sum(s.confidence for s in scored) / n
    out["predicted_cat_share"] = sum(s.predicted == CLASSES.index("cat") for s in scored) / n
    return out


# --- plots -------------------------------------------------------------------------------------


def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(plt: Any, fig: Any, path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], path: Path, title: str = "confusion matrix"
) -> bool:
    """Write the PNG; False when matplotlib is not installed."""
    plt = _pyplot()
    if plt is None:
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
    return _save(plt, fig, path)


def plot_roc(scored: Sequence[Scored], path: Path) -> bool:
    """Write the PNG; False when matplotlib is not installed."""
    plt = _pyplot()
    if plt is None:
        return False
    fpr, tpr = roc_curve(scored)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc(scored):.4f}")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_xlabel("false positive rate (cats called dog)")
    ax.set_ylabel("true positive rate (dogs called dog)")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    return _save(plt, fig, path)


def plot_reliability(scored: Sequence[Scored], path: Path, title: str = "reliability") -> bool:
    """The calibration bins the ECE averages over, against the diagonal, titled with the
    ECE; False when matplotlib is not installed."""
    plt = _pyplot()
    if plt is None:
        return False
    found = calibration_bins(scored)
    floor = 1 / len(CLASSES)  # the winning probability is never below this
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([floor, 1], [floor, 1], linestyle=":", color="grey", label="perfect calibration")
    ax.plot([b.confidence for b in found], [b.accuracy for b in found], marker="o", label="model")
    ax.set_xlabel("confidence (winning probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {expected_calibration_error(scored):.4f})")
    ax.legend()
    return _save(plt, fig, path)
