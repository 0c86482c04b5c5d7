"""The evaluate stage's report: the files `dvc metrics` and `dvc plots` read, written from
known logits (no model needed), at the checkpoint's temperature and at T = 1."""

import csv
import json
from pathlib import Path

import pytest
import torch

from training.dataset import Sample
from training.evaluate import write_report

LABELS = torch.tensor([0, 0, 1, 1, 1])
# log-probabilities: at T = 1 the softmax gives these probabilities back.
LOGITS = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]]).log()


def _samples() -> list[Sample]:
    return [Sample(Path(f"data/raw/x/{i}.jpg"), int(y), "") for i, y in enumerate(LABELS)]


def test_the_report_writes_metrics_plots_and_the_csvs_dvc_plots_reads(tmp_path: Path) -> None:
    metrics, files = write_report(
        LABELS, LOGITS, 1.0, _samples(), tmp_path / "plots", tmp_path / "m.json"
    )

    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    assert metrics["accuracy"] == 0.6 and metrics["n"] == 5
    assert metrics["ece"] == metrics["ece_uncalibrated"] and metrics["temperature"] == 1.0
    assert all(f.stat().st_size > 0 for f in files)
    assert {f.name for f in files} >= {"reliability.png", "reliability_uncalibrated.png"}
    rows = list(csv.DictReader((tmp_path / "plots/predictions.csv").open()))
    assert [(r["actual"], r["predicted"]) for r in rows][:2] == [("cat", "cat"), ("cat", "dog")]
    assert float(rows[0]["p_dog"]) == pytest.approx(0.1, abs=1e-6)
    roc = list(csv.reader((tmp_path / "plots/roc.csv").open()))
    assert roc[0] == ["fpr", "tpr"] and roc[1] == ["0.0", "0.0"] and roc[-1] == ["1.0", "1.0"]


def test_the_report_scores_the_calibrated_probabilities_and_keeps_the_raw_ece(
    tmp_path: Path,
) -> None:
    raw, _ = write_report(LABELS, LOGITS, 1.0, _samples(), tmp_path / "a", tmp_path / "a.json")
    soft, _ = write_report(LABELS, LOGITS, 3.0, _samples(), tmp_path / "b", tmp_path / "b.json")

    assert soft["temperature"] == 3.0
    assert soft["ece_uncalibrated"] == raw["ece"]  # the same logits at T = 1
    assert soft["ece"] != raw["ece"]
    assert soft["mean_confidence"] < raw["mean_confidence"]
    assert soft["accuracy"] == raw["accuracy"]  # a temperature never changes an answer
    p_dog = float(next(csv.DictReader((tmp_path / "b/predictions.csv").open()))["p_dog"])
    assert p_dog == pytest.approx(torch.softmax(LOGITS[0] / 3.0, 0)[1].item(), abs=1e-6)
