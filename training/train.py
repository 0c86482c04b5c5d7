"""Train stage: fit the configured model on the train split, early-stopping on validation.

Transfer models train in two phases (see params.yaml): the head on frozen-backbone features
computed once, then optionally the last backbone blocks end to end. From-scratch models train
end to end. Then one softmax temperature is fitted on the validation split's logits and
stored in the checkpoint's config, so every consumer reports calibrated probabilities.
Outputs: models/model.pt (checkpoint with its config and lineage), the per-epoch history for
DVC plots, metrics/train.json, and an MLflow run that later stages add to.
"""

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import torch

from common.logging_setup import configure_logging
from common.ml.calibration import calibration_error, fit_temperature
from common.ml.checkpoint import save_checkpoint
from common.ml.model import LITE_VARIANTS, ModelConfig, build_model, native_input_size
from common.ml.open_set import flagged_share, threshold_for_flag_rate
from training import registry
from training.artifacts import (
    CHECKPOINT,
    RUN_FILE,
    TRAIN_CURVES,
    TRAIN_FEATURES,
    TRAIN_HISTORY,
    TRAIN_METRICS,
)
from training.backbones import load_pretrained_backbone
from training.dataset import Sample, read_split
from training.fitting import (
    FitRun,
    History,
    fit_end_to_end,
    fit_head_on_features,
    prepare_model,
    validation_logits,
)
from training.lineage import data_lineage, git_commit
from training.params import Params, load_params
from training.runtime import pick_device, seed_everything, use_all_cores

log = logging.getLogger(__name__)


def model_config(params: Params) -> ModelConfig:
    """The model to train; its normalisation follows from the arch (common.ml.model)."""
    arch = params.model.arch
    image_size = params.model.image_size or native_input_size(arch)
    return ModelConfig(
        arch=arch,
        image_size=image_size,
        resize_size=params.model.resize_size or image_size,
        dropout=params.model.dropout,
        # Only ImageNet-trained Lite weights bring the classifier the open-set signal reads.
        imagenet_head=params.model.pretrained and arch in LITE_VARIANTS,
    )


@dataclass
class Trained:
    model: torch.nn.Module  # best weights restored, eval mode
    config: ModelConfig  # with the fitted temperature
    history: History
    train_features: dict[str, Any]  # what training.audit reads (empty for end-to-end models)
    # The temperature, the validation ECE before and after, and the pet threshold.
    calibration: dict[str, float]


def train(params: Params, device: torch.device) -> Trained:
    """Build, initialise, fit and calibrate the model."""
    seed_everything(params.train.seed)
    config = model_config(params)
    model = build_model(config)
    from_scratch = config.arch == "simple_cnn" or not params.model.pretrained
    if not from_scratch:
        load_pretrained_backbone(model, config)
    model = prepare_model(model, device)
    train_samples, val_samples = read_split("train"), read_split("val")
    log.info(
        "training %s on %d images (val %d) on %s",
        config.arch,
        len(train_samples),
        len(val_samples),
        device,
    )
    run = FitRun(model, config, params.train, train_samples, val_samples, device)
    if from_scratch:
        fit_end_to_end(run, epochs=params.train.epochs, lr=params.train.lr, unfreeze_blocks=None)
    else:
        fit_head_on_features(run)
        if params.train.finetune_epochs > 0:
            fit_end_to_end(
                run,
                epochs=params.train.finetune_epochs,
                lr=params.train.finetune_lr,
                unfreeze_blocks=params.train.unfreeze_blocks,
            )
    calibrated, calibration = calibrate(run, params.train.pet_flag_rate)
    return Trained(
        model.eval(), calibrated, run.history, audit_features(run, train_samples), calibration
    )


def audit_features(run: FitRun, samples: list[Sample]) -> dict[str, Any]:
    """Phase 1's frozen features of the plain training photos, with their labels, paths and
    hashes; empty when the model trained end to end and so kept no features."""
    features, labels = run.train_features or (torch.empty(0, 0), torch.empty(0, dtype=torch.long))
    kept = samples if len(labels) else []
    return {
        "features": features,
        "labels": labels,
        "paths": [str(s.path) for s in kept],
        "sha256": [s.sha256 for s in kept],
    }


def calibrate(run: FitRun, pet_flag_rate: float) -> tuple[ModelConfig, dict[str, float]]:
    """`run.config` with the temperature that minimises the validation NLL and, for a model
    with an ImageNet head, the pet threshold that flags `pet_flag_rate` of the validation
    photos (all real cats and dogs); and a report of both."""
    logits, labels, pet_probabilities = validation_logits(run)
    temperature = fit_temperature(logits, labels)
    report = {
        "temperature": temperature,
        "val_ece_uncalibrated": calibration_error(logits, labels, 1.0),
        "val_ece": calibration_error(logits, labels, temperature),
    }
    config = replace(run.config, temperature=temperature)
    if pet_probabilities is not None:
        threshold = threshold_for_flag_rate(pet_probabilities, pet_flag_rate)
        report["pet_threshold"] = threshold
        report["val_pet_flagged"] = flagged_share(pet_probabilities, threshold)
        config = replace(config, pet_threshold=threshold)
    log.info("calibration on the validation split: %s", report)
    return config, report


def main() -> None:
    configure_logging(json_logs=False)
    params = load_params()
    use_all_cores()
    device = pick_device()
    started = time.perf_counter()
    lineage = {**data_lineage(), "git_commit": git_commit()}
    with registry.training_run(params, lineage) as run_id:
        trained = train(params, device)
        history = trained.history
        wall_s = time.perf_counter() - started
        save_checkpoint(
            CHECKPOINT,
            trained.model,
            trained.config,
            {
                "model_name": params.register_.model_name,
                "mlflow_run_id": run_id,
                "lineage": lineage,
                "best_epoch": history.best_epoch,
            },
        )
        torch.save(trained.train_features, TRAIN_FEATURES)
        history.write_csv(TRAIN_HISTORY)
        history.plot(TRAIN_CURVES)
        summary = {
            **history.best_metrics(),
            **trained.calibration,
            "epochs_run": len(history.rows),
            "train_wall_s": round(wall_s, 1),
            "device": str(device),
        }
        TRAIN_METRICS.parent.mkdir(parents=True, exist_ok=True)
        TRAIN_METRICS.write_text(json.dumps(summary, indent=2) + "\n")
        registry.log_training_outputs(history, summary, [TRAIN_HISTORY, TRAIN_CURVES])
        RUN_FILE.write_text(json.dumps({"mlflow_run_id": run_id}, indent=2) + "\n")
    log.info("trained in %.0f s: %s", wall_s, summary)


if __name__ == "__main__":
    main()
