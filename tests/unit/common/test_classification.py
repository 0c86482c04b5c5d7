"""common.classification, the one implementation of the metrics, against scikit-learn (and
a numpy reference for the ECE, which scikit-learn lacks) on seeded random predictions."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as sk

from common import classification as c
from common.classification import Scored

SEEDS = range(5)


def random_predictions(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """True labels (n,) and class probabilities (n, 2), rounded to two decimals so that
    tied scores, which the ROC curve must handle, occur often."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    # Informative but imperfect: P(dog) leans towards the true label.
    p_dog = np.clip(rng.normal(0.35 + 0.3 * labels, 0.25), 0.0, 1.0).round(2)
    return labels, np.stack([1 - p_dog, p_dog], axis=1)


def scored(labels: np.ndarray, probs: np.ndarray) -> list[Scored]:
    return c.scored_from_probabilities(labels.tolist(), probs.tolist())


def numpy_ece(labels: np.ndarray, probs: np.ndarray, bins: int) -> float:
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        members = (confidence > low) & (confidence <= high)
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


@pytest.mark.parametrize("seed", SEEDS)
def test_metrics_agree_with_scikit_learn_on_random_predictions(seed: int) -> None:
    labels, probs = random_predictions(seed)
    predicted = probs.argmax(axis=1)

    metrics = c.classification_metrics(scored(labels, probs))

    precision, recall, f1, support = sk.precision_recall_fscore_support(
        labels, predicted, labels=[0, 1], zero_division=0
    )
    assert metrics["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    for i, name in enumerate(("cat", "dog")):
        assert metrics[f"precision_{name}"] == pytest.approx(precision[i])
        assert metrics[f"recall_{name}"] == pytest.approx(recall[i])
        assert metrics[f"f1_{name}"] == pytest.approx(f1[i])
        assert metrics[f"support_{name}"] == support[i]
    assert metrics["precision_macro"] == pytest.approx(precision.mean())
    assert metrics["recall_macro"] == pytest.approx(recall.mean())
    assert metrics["f1_macro"] == pytest.approx(f1.mean())
    assert metrics["roc_auc"] == pytest.approx(sk.roc_auc_score(labels, probs[:, 1]))
    assert metrics["ece"] == pytest.approx(numpy_ece(labels, probs, c.CALIBRATION_BINS))
    assert metrics["mean_confidence"] == pytest.approx(probs.max(axis=1).mean())
    assert metrics["predicted_cat_share"] == pytest.approx((predicted == 0).mean())


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_curve_and_confusion_matrix_agree_with_scikit_learn(seed: int) -> None:
    labels, probs = random_predictions(seed)
    fpr, tpr = c.roc_curve(scored(labels, probs))
    sk_fpr, sk_tpr, _ = sk.roc_curve(labels, probs[:, 1], drop_intermediate=False)
    assert fpr == pytest.approx(sk_fpr.tolist())
    assert tpr == pytest.approx(sk_tpr.tolist())
    matrix = sk.confusion_matrix(labels, probs.argmax(axis=1), labels=[0, 1])
    assert c.confusion_matrix(scored(labels, probs)) == matrix.tolist()


def test_a_class_missing_from_the_labels_gives_zero_scores_and_no_auc() -> None:
    only_cats = [Scored(0, 0, 0.9, 0.1), Scored(0, 1, 0.6, 0.6)]
    metrics = c.classification_metrics(only_cats)
    assert metrics["precision_dog"] == 0.0 and metrics["recall_dog"] == 0.0
    assert np.isnan(metrics["roc_auc"])
    assert c.roc_curve(only_cats) == ([], [])


def test_photos_without_a_dog_probability_are_left_out_of_the_roc_only() -> None:
    with_p = [Scored(0, 0, 0.8, 0.2), Scored(1, 1, 0.7, 0.7)]
    metrics = c.classification_metrics([*with_p, Scored(1, 0, 0.9, None)])
    assert metrics["roc_auc"] == 1.0
    assert metrics["accuracy"] == pytest.approx(2 / 3)


def test_calibration_bins_are_half_open_on_the_left() -> None:
    # 0.6 sits exactly on an edge of 5 bins: it belongs to (0.4, 0.6], not (0.6, 0.8].
    bins = c.calibration_bins([Scored(0, 0, 0.6, 0.4), Scored(0, 0, 1.0, 0.0)], bins=5)
    assert [(b.low, b.high, b.count) for b in bins] == [(0.4, 0.6, 1), (0.8, 1.0, 1)]


def test_no_photo_is_refused_rather_than_scored_as_nan() -> None:
    with pytest.raises(ValueError, match="no classified photo"):
        c.classification_metrics([])


def test_each_plot_writes_a_png(tmp_path: Path) -> None:
    rows = scored(*random_predictions(0, n=50))
    paths = [tmp_path / f"{name}.png" for name in ("confusion", "roc", "reliability")]
    assert c.plot_confusion_matrix(c.confusion_matrix(rows), paths[0], "title")
    assert c.plot_roc(rows, paths[1])
    assert c.plot_reliability(rows, paths[2])
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
