"""Classification metrics and the plots people read them from."""

import itertools
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from common.labels import CLASSES


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def classification_metrics(labels: np.ndarray, probs: np.ndarray, bins: int) -> dict[str, float]:
    """Accuracy, per-class and macro precision/recall/F1, ROC AUC (dog positive), ECE."""
    predicted = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=list(range(len(CLASSES))), zero_division=0
    )
    out: dict[str, float] = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "n": float(len(labels)),
    }
    for i, name in enumerate(CLASSES):
        out[f"precision_{name}"] = float(precision[i])
        out[f"recall_{name}"] = float(recall[i])
        out[f"f1_{name}"] = float(f1[i])
        out[f"support_{name}"] = float(support[i])
    out["precision_macro"] = float(np.mean(precision))
    out["recall_macro"] = float(np.mean(recall))
    out["f1_macro"] = float(np.mean(f1))
    out["roc_auc"] = (
        float(roc_auc_score(labels, probs[:, 1])) if len(set(labels)) > 1 else float("nan")
    )
    out["ece"] = expected_calibration_error(labels, probs, bins)
    # Reference values for the live drift gauges: what the served model's predictions look
    # like on held-out data.
    out["mean_confidence"] = float(probs.max(axis=1).mean())
    out["predicted_cat_share"] = float((predicted == CLASSES.index("cat")).mean())
    return out


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(
    labels: np.ndarray, probs: np.ndarray, path: Path, title: str = ""
) -> None:
    plt = _pyplot()
    matrix = confusion_matrix(labels, probs.argmax(axis=1), labels=list(range(len(CLASSES))))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            color="white" if count > matrix.max() / 2 else "black",
            fontsize=14,
        )
    ax.set_xticks(range(len(CLASSES)), CLASSES)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title or "confusion matrix")
    _save(fig, path)


def plot_roc(labels: np.ndarray, probs: np.ndarray, path: Path) -> None:
    plt = _pyplot()
    fpr, tpr, _ = roc_curve(labels, probs[:, 1])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(labels, probs[:, 1]):.4f}")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_xlabel("false positive rate (cats called dog)")
    ax.set_ylabel("true positive rate (dogs called dog)")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    _save(fig, path)


def plot_reliability(labels: np.ndarray, probs: np.ndarray, bins: int, path: Path) -> None:
    plt = _pyplot()
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.5, 1.0, bins + 1)  # the winning probability is never below 0.5
    centres, accuracy = [], []
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            centres.append(confidence[in_bin].mean())
            accuracy.append(correct[in_bin].mean())
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0.5, 1], [0.5, 1], linestyle=":", color="grey", label="perfect calibration")
    ax.plot(centres, accuracy, marker="o", label="model")
    ax.set_xlabel("confidence (winning probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {expected_calibration_error(labels, probs, bins):.4f})")
    ax.legend()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
