"""The open-set signal: the ImageNet probability of the cat and dog classes, and the
threshold that flags a chosen share of real pet photos."""

import pytest
import torch

from common.ml.model import ModelConfig, build_model
from common.ml.open_set import (
    IMAGENET_CLASS_COUNT,
    classify,
    flagged_share,
    looks_like_a_pet,
    pet_probability,
    threshold_for_flag_rate,
)

BEAGLE, TABBY, GOLDFISH, LYNX = 162, 281, 1, 287


def _logits_on(*classes: int) -> torch.Tensor:
    logits = torch.full((len(classes), IMAGENET_CLASS_COUNT), -20.0)
    for row, index in enumerate(classes):
        logits[row, index] = 20.0
    return logits


def test_dog_breeds_and_domestic_cats_count_as_pets_and_other_classes_do_not() -> None:
    pets = pet_probability(_logits_on(BEAGLE, TABBY, GOLDFISH, LYNX))
    assert pets.tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0], abs=1e-6)


def test_the_threshold_flags_at_most_the_chosen_share_of_real_pets() -> None:
    pets = torch.linspace(0.01, 1.0, 200)
    threshold = threshold_for_flag_rate(pets, 0.05)
    flagged = (pets < threshold).float().mean().item()
    assert flagged == pytest.approx(0.05)
    assert threshold_for_flag_rate(pets, 0.0) == pytest.approx(0.01)  # flags none
    with pytest.raises(ValueError, match="flag_rate"):
        threshold_for_flag_rate(pets, 1.0)


def test_classify_gives_the_same_logits_as_the_model_and_a_pet_probability_per_photo() -> None:
    torch.manual_seed(0)
    with_head = build_model(ModelConfig(image_size=64, resize_size=64, imagenet_head=True)).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        logits, pets = classify(with_head, x)
        assert torch.allclose(logits, with_head(x), atol=1e-6)
    assert pets is not None and pets.shape == (3,)
    assert ((pets >= 0) & (pets <= 1)).all()


def test_a_model_without_an_imagenet_head_has_no_pet_probability() -> None:
    baseline = build_model(ModelConfig(arch="simple_cnn", image_size=32, resize_size=32)).eval()
    with torch.no_grad():
        _, pets = classify(baseline, torch.randn(2, 3, 32, 32))
    assert pets is None


def test_a_photo_exactly_at_the_threshold_counts_as_a_pet_and_is_not_flagged() -> None:
    pets = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert looks_like_a_pet(0.2, threshold=0.2)
    assert not looks_like_a_pet(0.19, threshold=0.2)
    assert flagged_share(pets, threshold=0.2) == pytest.approx(0.25)
