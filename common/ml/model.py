"""Model definitions. The architecture travels inside every checkpoint as a `ModelConfig`,
so loading never guesses sizes, normalisation, class order or calibration.

Architectures:
- `simple_cnn`: a small CNN trained from scratch (the baseline).
- `efficientnet_lite0`, `efficientnet_lite1`, `efficientnet_lite2`: EfficientNet-Lite (no
  squeeze-excite, ReLU6, fixed stem and head), one builder over the family's stage table,
  initialised from ImageNet weights (the transfer models).
- `torchvision:<name>`: any torchvision classifier with its last linear layer replaced.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common.labels import CLASSES
from common.ml.open_set import IMAGENET_CLASS_COUNT

TORCHVISION_PREFIX = "torchvision:"


@dataclass(frozen=True)
class InputNormalisation:
    """Per-channel mean and std applied to pixels scaled to [0, 1]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# torchvision's pretrained weights (and our from-scratch baseline) use ImageNet's statistics.
IMAGENET_STATISTICS = InputNormalisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# The EfficientNet-Lite weights were trained on (x * 255 - 127) / 128, i.e. [-1, 1]: that is
# x in [0, 1] normalised with mean 127/255 and std 128/255 on every channel.
SIGNED_UNIT_RANGE = InputNormalisation((127 / 255,) * 3, (128 / 255,) * 3)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "efficientnet_lite0"
    image_size: int = 224
    resize_size: int = 224
    # Left empty, these become the input convention of the arch's pretrained weights
    # (`input_normalisation`). A checkpoint records the values it was trained with, so an old
    # checkpoint keeps its own normalisation.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    classes: tuple[str, ...] = CLASSES
    dropout: float = 0.2
    # Softmax temperature fitted on the validation split after training (common.ml.calibration);
    # 1.0, what a checkpoint without one means, leaves the logits as they are.
    temperature: float = 1.0
    # Keep the backbone's ImageNet classifier for the "not a cat or dog" signal
    # (common.ml.open_set), and the pet probability below which a photo is flagged (chosen
    # on the validation split in training; None until then).
    imagenet_head: bool = False
    pet_threshold: float | None = None

    def __post_init__(self) -> None:
        family = input_normalisation(self.arch)
        # object.__setattr__: the documented way to fill a field of a frozen dataclass.
        if not self.mean:
            object.__setattr__(self, "mean", family.mean)
        if not self.std:
            object.__setattr__(self, "std", family.std)
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need one value per RGB channel: {self.mean} {self.std}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, not {self.temperature}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("mean", "std", "classes"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


class SimpleCNN(nn.Module):
    """Four conv blocks and a linear head: the from-scratch baseline."""

    def __init__(
        self, num_classes: int, dropout: float, widths: tuple[int, ...] = (32, 64, 128, 256)
    ):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for width in widths:
            layers += [
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C)
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.head(x)


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding: the ported ImageNet weights were trained with
    it, and the asymmetric pad on stride-2 layers matters for their accuracy."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    # TF's defaults, which the ported weights' running statistics assume.
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (no squeeze-excite in Lite)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SamePadConv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SamePadConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SamePadConv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out


@dataclass(frozen=True)
class LiteVariant:
    """One member of the EfficientNet-Lite family: its stage widths and depths and the input
    size its ImageNet weights were trained at."""

    channels: tuple[int, ...]  # output channels per stage
    repeats: tuple[int, ...]  # blocks per stage
    input_size: int


# (kernel, stride, expand ratio) per stage, shared by the whole family (EfficientNet-B0's).
LITE_STAGE_SHAPES = ((3, 1, 1), (3, 2, 6), (5, 2, 6), (3, 2, 6), (5, 1, 6), (5, 2, 6), (3, 1, 6))
# The variants scale B0's widths and depths (width/depth coefficients 1.0/1.0, 1.0/1.1,
# 1.1/1.2) but keep the stem (32), the head (1280) and the first and last stage's depth fixed.
# Widths and repeats here were read from each package's state dict (blocks per stage from the
# `_blocks.N` keys, widths from the project-conv shapes); loading strictly checks them.
LITE_VARIANTS = {
    "efficientnet_lite0": LiteVariant((16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1), 224),
    "efficientnet_lite1": LiteVariant((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1), 240),
    "efficientnet_lite2": LiteVariant((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1), 260),
}
LITE_STEM, LITE_HEAD = 32, 1280


class EfficientNetLite(nn.Module):
    """Any Lite variant, built from its stage table. Parameter names match the published
    state dicts, so ImageNet weights load strictly except for the replaced classifier."""

    feature_dim = LITE_HEAD

    def __init__(
        self, variant: LiteVariant, num_classes: int, dropout: float, imagenet_head: bool = False
    ):
        super().__init__()
        self._conv_stem = SamePadConv2d(3, LITE_STEM, 3, 2, bias=False)
        self._bn0 = _bn(LITE_STEM)
        blocks: list[nn.Module] = []
        in_ch = LITE_STEM
        stages = zip(LITE_STAGE_SHAPES, variant.channels, variant.repeats, strict=True)
        for (kernel, stride, expand), out_ch, repeats in stages:
            for i in range(repeats):
                blocks.append(MBConvBlock(in_ch, out_ch, kernel, stride if i == 0 else 1, expand))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv2d(in_ch, self.feature_dim, 1, bias=False)
        self._bn1 = _bn(self.feature_dim)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(self.feature_dim, num_classes)
        # The published classifier (1000 ImageNet classes), kept frozen beside ours for
        # common.ml.open_set; not part of training.
        self.imagenet_head = (
            nn.Linear(self.feature_dim, IMAGENET_CLASS_COUNT).requires_grad_(False)
            if imagenet_head
            else None
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1280)
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))


class TorchvisionClassifier(nn.Module):
    """Any torchvision classification model with its last linear layer replaced by ours, so
    every architecture offers the same `features()` / `_fc` split for two-phase training."""

    def __init__(self, name: str, num_classes: int, dropout: float):
        super().__init__()
        import torchvision

        self.backbone = torchvision.models.get_model(name, weights=None)
        parent, attr, last = _last_linear(self.backbone)
        setattr(parent, attr, nn.Identity())
        self.feature_dim = last.in_features
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(last.in_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.backbone(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))


def _last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The module holding the final nn.Linear, its attribute name, and the layer itself."""
    found: tuple[nn.Module, str, nn.Linear] | None = None
    for parent in model.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, attr, child)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no linear classifier to replace")
    return found


ARCHITECTURES = ("simple_cnn", *LITE_VARIANTS, f"{TORCHVISION_PREFIX}<name>")


def input_normalisation(arch: str) -> InputNormalisation:
    """The input convention `arch`'s pretrained weights were trained with: the one place that
    states it per backbone family."""
    return SIGNED_UNIT_RANGE if arch in LITE_VARIANTS else IMAGENET_STATISTICS


def native_input_size(arch: str) -> int:
    """The image size `arch`'s pretrained weights were trained at (224 outside the Lite family,
    torchvision's classification size)."""
    return LITE_VARIANTS[arch].input_size if arch in LITE_VARIANTS else 224


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised model for `config` (weights come from a checkpoint or backbone)."""
    num_classes = len(config.classes)
    if config.arch == "simple_cnn":
        return SimpleCNN(num_classes, config.dropout)
    if config.arch in LITE_VARIANTS:
        return EfficientNetLite(
            LITE_VARIANTS[config.arch], num_classes, config.dropout, config.imagenet_head
        )
    if config.arch.startswith(TORCHVISION_PREFIX):
        return TorchvisionClassifier(
            config.arch.removeprefix(TORCHVISION_PREFIX), num_classes, config.dropout
        )
    raise ValueError(f"unknown architecture {config.arch!r}; expected one of {ARCHITECTURES}")
