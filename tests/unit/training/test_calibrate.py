"""The train stage's calibration step on a small real run: a head fitted hard on few photos is
over-confident on the validation photos, and the fitted temperature makes its stated
confidence match its accuracy there."""

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from common.ml.model import ModelConfig, build_model
from training.backbones import load_pretrained_backbone
from training.dataset import Sample
from training.fitting import FitRun, fit_head_on_features, validation_logits
from training.params import TrainParams
from training.runtime import seed_everything
from training.train import calibrate

EPOCHS = 40


@pytest.fixture(scope="module")
def over_confident_run(
    labelled_samples: Callable[[range], list[Sample]], two_threads: None
) -> FitRun:
    """Lite0 at 96 px, its head fitted on 40 photos without weight decay or label smoothing
    until the training loss is ~0, and scored on 120 other photos (val accuracy ~0.88)."""
    seed_everything(0)
    config = ModelConfig(image_size=96, resize_size=96, imagenet_head=True)
    model = build_model(config)
    load_pretrained_backbone(model, config)
    params = TrainParams(
        head_epochs=EPOCHS,
        lr=0.01,
        weight_decay=0.0,
        label_smoothing=0.0,
        early_stopping_patience=EPOCHS,
        num_workers=0,
        feature_views=1,
    )
    train, val = labelled_samples(range(100, 120)), labelled_samples(range(300, 360))
    run = FitRun(model, config, params, train, val, torch.device("cpu"))
    fit_head_on_features(run)
    return run


def test_the_fitted_temperature_lowers_validation_ece_and_nll(over_confident_run: FitRun) -> None:
    config, report = calibrate(over_confident_run, pet_flag_rate=0.05)

    assert config.temperature == report["temperature"]
    # Measured: T 3.46, ECE 0.135 -> 0.054.
    assert config.temperature > 1.5  # an over-confident model is softened
    assert report["val_ece"] < 0.6 * report["val_ece_uncalibrated"]
    logits, labels, _ = validation_logits(over_confident_run)
    nll_after = F.cross_entropy(logits / config.temperature, labels)
    assert nll_after < F.cross_entropy(logits, labels)


def test_validation_logits_from_cached_features_equal_a_pass_over_the_photos(
    over_confident_run: FitRun,
) -> None:
    cached, cached_labels, cached_pets = validation_logits(over_confident_run)
    after_end_to_end = replace(over_confident_run, val_features=None)
    full, full_labels, full_pets = validation_logits(after_end_to_end)

    assert torch.equal(cached_labels, full_labels)
    # Measured: 5e-6 apart (float summation order).
    assert torch.allclose(cached, full, atol=1e-4)
    assert cached_pets is not None and full_pets is not None
    assert torch.allclose(cached_pets, full_pets, atol=1e-4)


def test_the_pet_threshold_flags_the_chosen_share_of_validation_photos(
    over_confident_run: FitRun,
) -> None:
    config, report = calibrate(over_confident_run, pet_flag_rate=0.05)

    # 120 real cats and dogs: at most 6 of them below the threshold, and it is no empty bar.
    assert config.pet_threshold == report["pet_threshold"] > 0
    assert 0 < report["val_pet_flagged"] <= 0.05 + 1e-6  # a float32 mean
