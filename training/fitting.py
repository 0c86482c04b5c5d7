"""The training loops: head-on-cached-features and end to end, with early stopping."""

import copy
import csv
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from common.ml.model import EfficientNetLite, ModelConfig
from common.ml.open_set import classify, classify_features
from common.ml.preprocessing import AugmentationParams, eval_transform, train_transform
from training import registry
from training.dataset import ImageDataset, Sample
from training.params import TrainParams

log = logging.getLogger(__name__)


@dataclass
class History:
    """One row per epoch across both phases; the best row is the lowest validation loss."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1

    def add(self, row: dict[str, Any]) -> bool:
        """Record an epoch; True when it is the best so far."""
        row = {"epoch": len(self.rows) + 1, **row}
        self.rows.append(row)
        registry.log_epoch(row)
        best = self.best_epoch < 0 or row["val_loss"] < self.rows[self.best_epoch - 1]["val_loss"]
        if best:
            self.best_epoch = row["epoch"]
        return best

    def best_metrics(self) -> dict[str, Any]:
        row = self.rows[self.best_epoch - 1]
        return {
            "best_epoch": self.best_epoch,
            "val_loss": row["val_loss"],
            "val_acc": row["val_acc"],
        }

    def write_csv(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in self.rows]
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
        for key, ax in (("loss", ax_loss), ("acc", ax_acc)):
            ax.plot(epochs, [r[f"train_{key}"] for r in self.rows], label="train")
            ax.plot(epochs, [r[f"val_{key}"] for r in self.rows], label="validation")
            ax.axvline(self.best_epoch, color="grey", linestyle=":", label="best epoch")
            ax.set_xlabel("epoch")
            ax.set_title("loss" if key == "loss" else "accuracy")
            ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)


@dataclass
class FitRun:
    """What every training phase works on: the model, its data and the shared history."""

    model: nn.Module
    config: ModelConfig
    cfg: TrainParams
    train_samples: list[Sample]
    val_samples: list[Sample]
    device: torch.device
    history: History = field(default_factory=History)
    # Frozen-backbone features of the plain validation set (N, D) and labels (N,), while they
    # still describe the backbone: phase 1 sets them, end-to-end training clears them.
    val_features: tuple[torch.Tensor, torch.Tensor] | None = None
    # The plain view's training features (N, D) and labels, for the label audit.
    train_features: tuple[torch.Tensor, torch.Tensor] | None = None


class EarlyStopping:
    """Keeps the best weights and says when `patience` epochs brought no improvement."""

    def __init__(self, module: nn.Module, patience: int):
        self.module, self.patience, self.bad_epochs = module, patience, 0
        self.best_state = copy.deepcopy(module.state_dict())

    def step(self, improved: bool) -> bool:
        if improved:
            self.bad_epochs = 0
            self.best_state = copy.deepcopy(self.module.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self) -> None:
        self.module.load_state_dict(self.best_state)


def _augmentation(params: TrainParams) -> AugmentationParams:
    a = params.augmentation
    return AugmentationParams(
        a.random_resized_crop_scale, a.horizontal_flip, a.rotation_degrees, a.color_jitter
    )


def _loader(
    samples: list[Sample], transform: Any, params: TrainParams, shuffle: bool, seed: int
) -> DataLoader[tuple[torch.Tensor, int]]:
    """Training batches when shuffled; otherwise (features, validation) forward passes
    without gradients, at the batch size that is fastest for those on this hardware."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        ImageDataset(samples, transform),
        batch_size=params.batch_size if shuffle else params.inference_batch_size,
        shuffle=shuffle,
        num_workers=params.num_workers,
        generator=generator,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


@contextmanager
def _autocast(device: torch.device) -> Iterator[None]:
    # Mixed precision on CUDA only: CPU autocast is slower than float32 for these convs.
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.float16):
            yield
    else:
        yield


def _make_optimizer(
    params: nn.Module | list[nn.Parameter], cfg: TrainParams, lr: float
) -> torch.optim.Optimizer:
    trainable = [
        p
        for p in (params.parameters() if isinstance(params, nn.Module) else params)
        if p.requires_grad
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            trainable, lr=lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(trainable, lr=lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; expected adamw or sgd")


def _make_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainParams, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    raise ValueError(f"unknown schedule {cfg.schedule!r}; expected cosine or constant")


def _to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    # channels_last makes the depthwise convolutions ~1.5x faster on CPU and is what
    # tensor cores want on CUDA; the model is converted once in `prepare_model`.
    return images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    return model.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]


@torch.inference_mode()
def extract_features(
    model: nn.Module, loader: DataLoader[Any], device: torch.device, desc: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen-backbone features for every image: (N, D) float32 and (N,) labels."""
    model.eval()
    feats, labels = [], []
    for images, targets in tqdm(loader, desc=desc, unit="batch", leave=False):
        with _autocast(device):
            feats.append(model.features(_to_device(images, device)).float().cpu())  # type: ignore[operator]
        labels.append(targets)
    return torch.cat(feats), torch.cat(labels)


def _cached_features(run: FitRun) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backbone features of `feature_views` views of the train set (the plain one first, then
    augmented ones) and of the plain validation set: x_train, y_train, x_val, y_val."""
    cfg = run.cfg
    plain = eval_transform(run.config)
    augmented = train_transform(run.config, _augmentation(cfg))
    x_parts, y_parts = [], []
    for view in range(cfg.feature_views):
        transform = plain if view == 0 else augmented
        loader = _loader(run.train_samples, transform, cfg, False, cfg.seed + view)
        desc = f"features train view {view + 1}/{cfg.feature_views}"
        x, y = extract_features(run.model, loader, run.device, desc)
        x_parts.append(x)
        y_parts.append(y)
    val_loader = _loader(run.val_samples, plain, cfg, False, cfg.seed)
    x_val, y_val = extract_features(run.model, val_loader, run.device, "features val")
    return torch.cat(x_parts), torch.cat(y_parts), x_val, y_val


def fit_head_on_features(run: FitRun) -> None:
    """Phase 1: backbone frozen, so its features are computed once and only the classifier
    trains, for many cheap epochs."""
    x_train, y_train, x_val, y_val = _cached_features(run)
    plain = len(run.train_samples)  # the plain view comes first
    run.train_features = (x_train[:plain], y_train[:plain])
    model, cfg, device, history = run.model, run.cfg, run.device, run.history
    head = nn.Sequential(model._dropout, model._fc)  # type: ignore[arg-type]
    head.to(device)
    batches = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=256,
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    optimizer = _make_optimizer(head, cfg, cfg.lr)
    schedule = _make_schedule(optimizer, cfg, cfg.head_epochs * len(batches))
    stopper = EarlyStopping(head, cfg.early_stopping_patience)
    progress = tqdm(range(cfg.head_epochs), desc="head epochs", unit="epoch")
    for _ in progress:
        head.train()
        totals = _run_batches(head, batches, device, cfg, optimizer, schedule)
        head.eval()
        with torch.no_grad():
            val_logits = head(x_val.to(device))
            val_loss = F.cross_entropy(val_logits, y_val.to(device)).item()
            val_acc = (val_logits.argmax(1).cpu() == y_val).float().mean().item()
        row = {
            "phase": "head",
            **totals,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": optimizer.param_groups[0]["lr"],
        }
        progress.set_postfix(loss=f"{totals['train_loss']:.4f}", val_acc=f"{val_acc:.4f}")
        if stopper.step(history.add(row)):
            log.info("early stopping after %d head epochs", len(history.rows))
            break
    stopper.restore()
    run.val_features = (x_val, y_val)


def _run_batches(
    module: nn.Module,
    batches: Any,
    device: torch.device,
    cfg: TrainParams,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    loss_sum, correct, seen = 0.0, 0, 0
    for inputs, targets in batches:
        inputs = _to_device(inputs, device) if inputs.dim() == 4 else inputs.to(device)
        targets = targets.to(device)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device):
            logits = module(inputs)
            loss = F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        schedule.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError("training loss is not finite; lower the learning rate")
        loss_sum += loss.item() * len(targets)
        correct += (logits.argmax(1) == targets).sum().item()
        seen += len(targets)
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
    return {"train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1)}


def _set_trainable(model: nn.Module, unfreeze_blocks: int | None) -> None:
    """None trains everything; k trains the last k backbone blocks plus the head."""
    if unfreeze_blocks is None:
        model.requires_grad_(True)
        return
    model.requires_grad_(False)
    if isinstance(model, EfficientNetLite):
        tail: list[nn.Module] = [
            *list(model._blocks)[len(model._blocks) - unfreeze_blocks :],
            model._conv_head,
            model._bn1,
            model._fc,
        ]
    else:
        children = list(model.backbone.children())  # type: ignore[union-attr]
        tail = [*children[len(children) - unfreeze_blocks :], model._fc]  # type: ignore[list-item]
    for module in tail:
        module.requires_grad_(True)


def _train_mode(model: nn.Module) -> None:
    # Frozen layers keep their BatchNorm statistics: updating them would shift the features
    # the trainable layers were fitted on.
    model.train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()


@torch.inference_mode()
def predict_outputs(
    model: nn.Module, loader: DataLoader[Any], device: torch.device, desc: str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Logits (N, C) float32, labels (N,) and pet probabilities (N,) or None for every image
    of `loader`, on the CPU; `desc` shows a progress bar."""
    model.eval().to(device)
    logits, labels, pets = [], [], []
    batches = loader if desc is None else tqdm(loader, desc=desc, unit="batch")
    for images, targets in batches:
        with _autocast(device):
            batch_logits, batch_pets = classify(model, _to_device(images, device))
        logits.append(batch_logits.float().cpu())
        labels.append(targets)
        if batch_pets is not None:
            pets.append(batch_pets.float().cpu())
    return torch.cat(logits), torch.cat(labels), torch.cat(pets) if pets else None


def _evaluate(
    model: nn.Module, loader: DataLoader[Any], device: torch.device
) -> tuple[float, float]:
    logits, labels, _ = predict_outputs(model, loader, device)
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return F.cross_entropy(logits, labels).item(), accuracy


@torch.no_grad()
def validation_logits(run: FitRun) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The fitted model's logits (N, C) on the plain validation set, its labels (N,) and the
    pet probability (N,) or None (common.ml.open_set.classify): through the heads alone when
    phase 1's cached features still describe the backbone (the same numbers, dropout being
    off in eval mode), else one pass over the images."""
    model = run.model.eval()
    if run.val_features is not None:
        features, labels = run.val_features
        logits, pets = classify_features(model, features.to(run.device))
        return logits.float().cpu(), labels, None if pets is None else pets.cpu()
    loader = _loader(run.val_samples, eval_transform(run.config), run.cfg, False, run.cfg.seed)
    return predict_outputs(run.model, loader, run.device)


def fit_end_to_end(
    run: FitRun,
    *,
    epochs: int,
    lr: float,
    unfreeze_blocks: int | None,
) -> None:
    """Augmented end-to-end training of the trainable part, one validation pass per epoch."""
    model, cfg, device, history = run.model, run.cfg, run.device, run.history
    run.val_features = None  # the backbone is about to move
    _set_trainable(model, unfreeze_blocks)
    phase = "scratch" if unfreeze_blocks is None else "finetune"
    augmented = train_transform(run.config, _augmentation(cfg))
    train_loader = _loader(run.train_samples, augmented, cfg, True, cfg.seed)
    val_loader = _loader(run.val_samples, eval_transform(run.config), cfg, False, cfg.seed)
    optimizer = _make_optimizer(model, cfg, lr)
    schedule = _make_schedule(optimizer, cfg, epochs * len(train_loader))
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    stopper = EarlyStopping(model, cfg.early_stopping_patience)
    for epoch in range(epochs):
        _train_mode(model)
        batches = tqdm(train_loader, desc=f"{phase} epoch {epoch + 1}/{epochs}", unit="batch")
        totals = _run_batches(model, batches, device, cfg, optimizer, schedule, scaler)
        val_loss, val_acc = _evaluate(model, val_loader, device)
        row = {
            "phase": phase,
            **totals,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": optimizer.param_groups[0]["lr"],
        }
        log.info("epoch %d: %s", len(history.rows) + 1, row)
        if stopper.step(history.add(row)):
            log.info("early stopping after %d epochs", len(history.rows))
            break
    stopper.restore()
    model.eval()
