"""Train stage: fit the configured model on the train split, early-stopping on validation.

Transfer models train in two phases (see params.yaml): the head on frozen-backbone features
computed once, then optionally the last backbone blocks end to end. From-scratch models train
end to end. Outputs: models/model.pt (checkpoint with its config and lineage), the per-epoch
history for DVC plots, metrics/train.json, and an MLflow run that later stages add to.
"""

import json
import logging
import time

import torch

from common.logging_setup import configure_logging
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


def train(params: Params, device: torch.device) -> tuple[torch.nn.Module, ModelConfig, History]:
    """Build, initialise and fit the model; returns it with its best weights restored."""
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
        return model, config, run.history
    fit_head_on_features(run)
    if params.train.finetune_epochs > 0:
        fit_end_to_end(
            run,
            epochs=params.train.finetune_epochs,
            lr=params.train.finetune_lr,
            unfreeze_blocks=params.train.unfreeze_blocks,
        )
    return model, config, run.history


def main() -> None:
    configure_logging(json_logs=False)
    params = load_params()
    use_all_cores()
    device = pick_device()
    started = time.perf_counter()
    lineage = {**data_lineage(), "git_commit": git_commit()}
    with registry.training_run(params, lineage) as run_id:
        model, config, history = train(params, device)
        wall_s = time.perf_counter() - started
        save_checkpoint(
            CHECKPOINT,
            model,
            config,
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
