"""Temperature scaling: the fit recovers a known temperature, and applying one changes the
confidence of every answer but never the answer."""

import pytest
import torch

from common.ml.calibration import (
    MIN_TEMPERATURE,
    calibrated_probabilities,
    calibration_error,
    fit_temperature,
)


def _calibrated_logits(n: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-class logits whose softmax is the true probability of each label: calibrated by
    construction, so scaling them by k makes a model whose best temperature is k."""
    generator = torch.Generator().manual_seed(0)
    margin = 2.0 * torch.randn(n, generator=generator)  # logit of class 1 over class 0
    labels = (torch.rand(n, generator=generator) < torch.sigmoid(margin)).long()
    return torch.stack([torch.zeros(n), margin], dim=1), labels


@pytest.mark.parametrize("scale", [3.0, 0.4])
def test_the_fit_recovers_the_temperature_of_a_miscalibrated_model(scale: float) -> None:
    logits, labels = _calibrated_logits()
    over_or_under_confident = logits * scale

    temperature = fit_temperature(over_or_under_confident, labels)

    # Measured: 3.09 and 0.41 (the 4,000 labels are a sample, so not exactly 3 and 0.4).
    assert temperature == pytest.approx(scale, rel=0.1)
    before = calibration_error(over_or_under_confident, labels, 1.0)
    after = calibration_error(over_or_under_confident, labels, temperature)
    assert after < 0.02 < 0.1 < before


def test_a_perfectly_separated_set_stops_at_the_lower_bound() -> None:
    logits = torch.tensor([[2.0, -2.0], [-1.0, 3.0]])
    temperature = fit_temperature(logits, torch.tensor([0, 1]))
    assert temperature == pytest.approx(MIN_TEMPERATURE, rel=1e-3)


def test_a_temperature_changes_the_confidence_but_never_the_answer() -> None:
    logits = torch.randn(32, 2, generator=torch.Generator().manual_seed(1)) * 4
    plain = calibrated_probabilities(logits, 1.0)
    soft = calibrated_probabilities(logits, 2.5)

    assert torch.allclose(plain, torch.softmax(logits, dim=1))
    assert torch.allclose(soft, torch.softmax(logits / 2.5, dim=1))
    assert torch.equal(soft.argmax(1), plain.argmax(1))
    assert (soft.max(1).values < plain.max(1).values).all()
    assert torch.allclose(soft.sum(1), torch.ones(32))
