"""Evaluate stage: score the checkpoint on the test split (or on any labelled folder).

`python -m training.evaluate` writes metrics/eval.json, PNG plots and CSVs for `dvc plots`,
and adds them to the training run in MLflow. Every metric is of the probabilities served: the
logits divided by the checkpoint's temperature (common.ml.calibration); `ece_uncalibrated`
and the second reliability diagram show the same logits at T = 1, before calibration.
`python -m training.evaluate --data FOLDER --out DIR` scores the same way on another labelled
folder (Cat/ Dog/ sub-folders or cat.N.jpg names), for example a different source.
"""

import argparse
import csv
import json
import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from common import classification
from common.classification import Scored
from common.labels import CLASSES, label_index
from common.logging_setup import configure_logging
from common.ml.calibration import scored_at
from common.ml.checkpoint import load_checkpoint
from common.ml.model import ModelConfig
from common.ml.preprocessing import eval_transform
from training import registry
from training.artifacts import CHECKPOINT, EVAL_METRICS, EVAL_PLOTS_DIR, RUN_FILE
from training.dataset import ImageDataset, Sample, read_split
from training.params import load_params
from training.runtime import pick_device, use_all_cores
from training.sources import scan_source

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    config: ModelConfig,
    samples: list[Sample],
    device: torch.device,
    batch_size: int = 64,
    num_workers: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) float32 and true labels (N,), through the serving preprocessing."""
    loader = DataLoader(
        ImageDataset(samples, eval_transform(config)),
        batch_size=batch_size,
        num_workers=num_workers,
    )
    model.eval().to(device)
    logits, labels = [], []
    for images, targets in tqdm(loader, desc="evaluating", unit="batch"):
        logits.append(model(images.to(device)).float().cpu())
        labels.append(targets)
    return torch.cat(logits), torch.cat(labels)


def write_report(
    labels: torch.Tensor,
    logits: torch.Tensor,
    temperature: float,
    samples: list[Sample],
    out_dir: Path,
    metrics_file: Path,
) -> tuple[dict[str, float], list[Path]]:
    """metrics.json, the PNG plots and the CSVs `dvc plots` read, of the probabilities served
    at `temperature`, plus the ECE and reliability diagram at T = 1; returns the metrics and
    the files written."""
    scored = scored_at(labels, logits, temperature)
    uncalibrated = scored_at(labels, logits, 1.0)
    metrics = classification.classification_metrics(scored)
    metrics |= {
        "temperature": temperature,
        "ece_uncalibrated": classification.expected_calibration_error(uncalibrated),
    }
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = [
        out_dir / "confusion_matrix.png",
        out_dir / "roc.png",
        out_dir / "reliability.png",
        out_dir / "reliability_uncalibrated.png",
    ]
    classification.plot_confusion_matrix(classification.confusion_matrix(scored), pngs[0])
    classification.plot_roc(scored, pngs[1])
    classification.plot_reliability(
        scored, pngs[2], f"reliability, calibrated (T = {temperature:.3f})"
    )
    classification.plot_reliability(uncalibrated, pngs[3], "reliability, uncalibrated (T = 1)")
    _write_predictions_csv(scored, samples, out_dir / "predictions.csv")
    _write_roc_csv(scored, out_dir / "roc.csv")
    return metrics, [*pngs, out_dir / "predictions.csv", out_dir / "roc.csv"]


def _write_predictions_csv(scored: list[Scored], samples: list[Sample], path: Path) -> None:
    # One row per image: DVC's confusion template reads actual/predicted.
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "actual", "predicted", "p_dog"])
        for sample, s in zip(samples, scored, strict=True):
            writer.writerow(
                [sample.path, CLASSES[s.actual], CLASSES[s.predicted], f"{s.p_dog:.6f}"]
            )


def _write_roc_csv(scored: list[Scored], path: Path) -> None:
    fpr, tpr = classification.roc_curve(scored)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fpr", "tpr"])
        writer.writerows((round(x, 6), round(y, 6)) for x, y in zip(fpr, tpr, strict=True))


def _folder_samples(folder: Path) -> list[Sample]:
    """Labelled files of any folder, found by the same rules ingest uses."""
    return [Sample(f.path, label_index(f.label), "") for f in scan_source(folder).files]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--data", type=Path, help="a labelled folder instead of the test split")
    parser.add_argument(
        "--out", type=Path, help="output folder for --data (default reports/eval-<name>)"
    )
    args = parser.parse_args(argv)
    configure_logging(json_logs=False)
    use_all_cores()
    params = load_params()
    device = pick_device()
    model, config, _ = load_checkpoint(args.checkpoint, map_location=device)
    if args.data is not None:
        samples = _folder_samples(args.data)
        out = args.out or Path("reports") / f"eval-{args.data.resolve().name}"
        logits, labels = predict_logits(
            model, config, samples, device, num_workers=params.train.num_workers
        )
        metrics, _ = write_report(
            labels, logits, config.temperature, samples, out, out / "metrics.json"
        )
        print(json.dumps(metrics, indent=2))
        return
    samples = read_split("test")
    logits, labels = predict_logits(
        model, config, samples, device, num_workers=params.train.num_workers
    )
    metrics, files = write_report(
        labels, logits, config.temperature, samples, EVAL_PLOTS_DIR, EVAL_METRICS
    )
    with registry.resume_run(RUN_FILE):
        registry.log_evaluation(metrics, files)
    log.info("test metrics: %s", json.dumps(metrics))


if __name__ == "__main__":
    main()
