"""The one preprocessing function used by evaluation and by serving, and the training-time
augmentation built from `params.yaml`. Both start from a `common.imaging.decode_image` result,
so a photo reaches the model through identical steps in training and in production.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import v2

from common.ml.model import ModelConfig


@dataclass(frozen=True)
class AugmentationParams:
    random_resized_crop_scale: tuple[float, float] = (0.6, 1.0)
    horizontal_flip: float = 0.5
    rotation_degrees: float = 15.0
    color_jitter: float = 0.2


def _to_normalised_tensor(config: ModelConfig) -> list[v2.Transform]:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(config.mean), std=list(config.std)),
    ]


def eval_transform(config: ModelConfig) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the short side, centre-crop, scale to [0, 1], normalise: (3, S, S) float32."""
    return v2.Compose(
        [
            v2.Resize(config.resize_size, antialias=True),
            v2.CenterCrop(config.image_size),
            *_to_normalised_tensor(config),
        ]
    )


def train_transform(
    config: ModelConfig, aug: AugmentationParams
) -> Callable[[Image.Image], torch.Tensor]:
    """Random resized crop, flip, rotation and colour jitter, then the eval normalisation."""
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop(
            config.image_size, scale=aug.random_resized_crop_scale, antialias=True
        ),
        v2.RandomHorizontalFlip(aug.horizontal_flip),
    ]
    if aug.rotation_degrees > 0:
        steps.append(v2.RandomRotation(aug.rotation_degrees))
    if aug.color_jitter > 0:
        j = aug.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    return v2.Compose([*steps, *_to_normalised_tensor(config)])


def preprocess_batch(images: Sequence[Image.Image], config: ModelConfig) -> torch.Tensor:
    """Serving entry point: decoded RGB images -> a (B, 3, S, S) batch."""
    transform = eval_transform(config)
    return torch.stack([transform(image) for image in images])
