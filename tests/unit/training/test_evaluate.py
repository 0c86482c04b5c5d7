"""The evaluate stage's report: the files `dvc metrics` and `dvc plots` read, written from
known predictions (no model needed)."""

import csv
import json
from pathlib import Path

import numpy as np

from training.dataset import Sample
from training.evaluate import write_report


def test_the_report_writes_metrics_plots_and_the_csvs_dvc_plots_reads(tmp_path: Path) -> None:
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    samples = [Sample(Path(f"data/raw/x/{i}.jpg"), int(y), "") for i, y in enumerate(labels)]

    metrics, files = write_report(labels, probs, samples, tmp_path / "plots", tmp_path / "m.json")

    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    assert metrics["accuracy"] == 0.6 and metrics["n"] == 5
    assert all(f.stat().st_size > 0 for f in files)
    rows = list(csv.DictReader((tmp_path / "plots/predictions.csv").open()))
    assert [(r["actual"], r["predicted"]) for r in rows][:2] == [("cat", "cat"), ("cat", "dog")]
    roc = list(csv.reader((tmp_path / "plots/roc.csv").open()))
    assert roc[0] == ["fpr", "tpr"] and roc[1] == ["0.0", "0.0"] and roc[-1] == ["1.0", "1.0"]
