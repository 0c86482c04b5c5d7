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

import torch

from common.logging_setup import configure_logging
from common.ml.calibration import calibration_error, fit_temperature
from common.ml.checkpoint import save_checkpoint
from common.ml.model import ModelConfig, build_model, native_input_size
from training import registry
from training.artifacts import CHECKPOINT, RUN_FILE, TRAIN_CURVES, TRAIN_HISTORY, TRAIN_METRICS
from training.backbones import load_pretrained_backbone
from training.dataset import read_split
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
    )


@dataclass
class Trained:
    model: torch.nn.Module  # best weights restored, eval mode
    config: ModelConfig  # with the fitted temperature
    history: History
    calibration: dict[str, float]  # the temperature and the validation ECE before and after


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
    calibrated, calibration = calibrate(run)
    return Trained(model.eval(), calibrated, run.history, calibration)


def calibrate(run: FitRun) -> tuple[ModelConfig, dict[str, float]]:
    """`run.config` with the temperature that minimises the validation NLL, and a report."""
    logits, labels = validation_logits(run)
    temperature = fit_temperature(logits, labels)
    report = {
        "temperature": temperature,
        "val_ece_uncalibrated": calibration_error(logits, labels, 1.0),
        "val_ece": calibration_error(logits, labels, temperature),
    }
    log.info("calibration on the validation split: %s", report)
    return replace(run.config, temperature=temperature), report


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
