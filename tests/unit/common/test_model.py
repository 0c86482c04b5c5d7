"""Each backbone family's input convention, and the checkpoint recording it."""

from pathlib import Path

import pytest
import torch

from common.ml.checkpoint import load_checkpoint, save_checkpoint
from common.ml.model import (
    IMAGENET_STATISTICS,
    LITE_VARIANTS,
    SIGNED_UNIT_RANGE,
    InputNormalisation,
    ModelConfig,
    build_model,
    input_normalisation,
)


def test_lite_weights_take_pixels_scaled_to_minus_one_one() -> None:
    # The convention the TF weights were trained with: (x * 255 - 127) / 128.
    pixels = torch.tensor([0.0, 127 / 255, 1.0])
    mean, std = SIGNED_UNIT_RANGE.mean[0], SIGNED_UNIT_RANGE.std[0]
    assert ((pixels - mean) / std).tolist() == pytest.approx([-127 / 128, 0.0, 1.0])


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        *((arch, SIGNED_UNIT_RANGE) for arch in LITE_VARIANTS),
        ("simple_cnn", IMAGENET_STATISTICS),
        ("torchvision:resnet18", IMAGENET_STATISTICS),
    ],
)
def test_the_checkpoint_records_the_normalisation_of_its_backbone_family(
    tmp_path: Path, arch: str, expected: InputNormalisation
) -> None:
    config = ModelConfig(arch=arch, image_size=32, resize_size=32)
    assert input_normalisation(arch) == expected
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model(config), config)

    # Recorded in the file itself, not re-derived on loading.
    recorded = torch.load(path, weights_only=True)["config"]
    assert (tuple(recorded["mean"]), tuple(recorded["std"])) == (expected.mean, expected.std)
    _, loaded, _ = load_checkpoint(path)
    assert (loaded.mean, loaded.std) == (expected.mean, expected.std)


def test_a_checkpoint_from_before_the_fix_keeps_its_imagenet_normalisation_and_t_1(
    tmp_path: Path,
) -> None:
    # The format every existing checkpoint has: ImageNet statistics, no temperature key.
    config = ModelConfig(arch="efficientnet_lite0", image_size=32, resize_size=32)
    old_config = {
        k: v for k, v in config.to_dict().items() if k not in ("temperature", "mean", "std")
    }
    old_config |= {"mean": list(IMAGENET_STATISTICS.mean), "std": list(IMAGENET_STATISTICS.std)}
    payload = {
        "format_version": 1,
        "config": old_config,
        "state_dict": build_model(config).state_dict(),
        "metadata": {},
    }
    path = tmp_path / "old.pt"
    torch.save(payload, path)

    _, loaded, _ = load_checkpoint(path)

    assert (loaded.mean, loaded.std) == (IMAGENET_STATISTICS.mean, IMAGENET_STATISTICS.std)
    assert loaded.temperature == 1.0


def test_a_config_refuses_a_non_positive_temperature() -> None:
    with pytest.raises(ValueError, match="temperature must be positive"):
        ModelConfig(temperature=0.0)
