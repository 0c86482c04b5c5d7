"""Preprocessing shapes, normalisation and augmentation. That serving and evaluation build the
same tensor from the same photo is proven end to end, through the real stack, in
tests/integration/test_serving_preprocessing.py."""

from pathlib import Path

import torch

from common.imaging import decode_image
from common.ml.model import ModelConfig
from common.ml.preprocessing import AugmentationParams, preprocess_batch, train_transform
from tests.conftest import KAGGLE, PETIMAGES


def _serving_tensor(path: Path, config: ModelConfig) -> torch.Tensor:
    # What a worker does with uploaded bytes.
    return preprocess_batch([decode_image(path.read_bytes()).image], config)[0]


def test_eval_preprocessing_output_shape_and_normalisation() -> None:
    config = ModelConfig(image_size=96, resize_size=110)
    batch = _serving_tensor(KAGGLE / "cat.0.jpg", config)
    assert batch.shape == (3, 96, 96)
    assert batch.dtype == torch.float32
    # Normalised: values sit around zero, not in [0, 1].
    assert batch.min() < 0 < batch.max()


def test_training_augmentation_is_random_but_keeps_the_shape() -> None:
    config = ModelConfig(image_size=64, resize_size=64)
    transform = train_transform(config, AugmentationParams())
    image = decode_image((PETIMAGES / "Dog" / "1.jpg").read_bytes()).image
    first, second = transform(image), transform(image)
    assert first.shape == second.shape == (3, 64, 64)
    assert not torch.equal(first, second)
