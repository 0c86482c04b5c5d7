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

from common import classification
from common.classification import Scored
from common.labels import CLASSES, label_index
from common.logging_setup import configure_logging
from common.ml.calibration import scored_at
from common.ml.checkpoint import load_checkpoint
from common.ml.model import ModelConfig
from common.ml.open_set import flagged_share
from common.ml.preprocessing import eval_transform
from training import registry
from training.artifacts import CHECKPOINT, EVAL_METRICS, EVAL_PLOTS_DIR, RUN_FILE
from training.dataset import ImageDataset, Sample, read_split
from training.fitting import predict_outputs
from training.params import load_params
from training.runtime import pick_device, use_all_cores
from training.sources import scan_source

log = logging.getLogger(__name__)


def predict_logits(
    model: torch.nn.Module,
    config: ModelConfig,
    samples: list[Sample],
    device: torch.device,
    batch_size: int,
    num_workers: int = 2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Logits (N, C), true labels (N,) and pet probabilities (N,) or None, through the
    serving preprocessing."""
    loader = DataLoader(
        ImageDataset(samples, eval_transform(config)),
        batch_size=batch_size,
        num_workers=num_workers,
    )
    return predict_outputs(model, loader, device, desc="evaluating")


def write_report(
    labels: torch.Tensor,
    logits: torch.Tensor,
    temperature: float,
    samples: list[Sample],
    out_dir: Path,
    metrics_file: Path,
    open_set: tuple[torch.Tensor, float] | None = None,
) -> tuple[dict[str, float], list[Path]]:
    """metrics.json, the PNG plots and the CSVs `dvc plots` read, of the probabilities served
    at `temperature`, plus the ECE and reliability diagram at T = 1; returns the metrics and
    the files written. `open_set` (pet probabilities, threshold) adds `pet_flagged`: the share
    of these photos, all real cats and dogs, that the "not a cat or dog" flag would catch."""
    scored = scored_at(labels, logits, temperature)
    uncalibrated = scored_at(labels, logits, 1.0)
    metrics = classification.classification_metrics(scored)
    metrics |= {
        "temperature": temperature,
        "ece_uncalibrated": classification.expected_calibration_error(uncalibrated),
    }
    if open_set is not None:
        pets, threshold = open_set
        metrics |= {
            "pet_threshold": threshold,
            "pet_flagged": flagged_share(pets, threshold),
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

    def report(
        samples: list[Sample], out_dir: Path, metrics_file: Path
    ) -> tuple[dict[str, float], list[Path]]:
        logits, labels, pets = predict_logits(
            model,
            config,
            samples,
            device,
            params.train.inference_batch_size,
            params.train.num_workers,
        )
        open_set = None
        if pets is not None and config.pet_threshold is not None:
            open_set = (pets, config.pet_threshold)
        return write_report(
            labels, logits, config.temperature, samples, out_dir, metrics_file, open_set
        )

    if args.data is not None:
        out = args.out or Path("reports") / f"eval-{args.data.resolve().name}"
        metrics, _ = report(_folder_samples(args.data), out, out / "metrics.json")
        print(json.dumps(metrics, indent=2))
        return
    metrics, files = report(read_split("test"), EVAL_PLOTS_DIR, EVAL_METRICS)
    with registry.resume_run(RUN_FILE):
        registry.log_evaluation(metrics, files)
    log.info("test metrics: %s", json.dumps(metrics))


if __name__ == "__main__":
    main()
