"""Temperature scaling: the one place that turns logits into the probabilities we report.

One temperature T, fitted on the validation split after training, divides the logits before
the softmax. T > 1 softens an over-confident model, T < 1 sharpens an under-confident one;
the ranking, and so every prediction, stays the same. Evaluation, serving and the MLflow
wrapper all call `calibrated_probabilities`, so the probability a client sees is the one the
test-split ECE was measured on.
"""

import math

import torch
import torch.nn.functional as F

from common import classification

# The search range for T: wide enough for any sane model; a perfectly separated validation
# set (where the likelihood keeps rising as T -> 0) stops at the bound instead of at zero.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
_SEARCH_STEPS = 60  # golden-section steps: the bracket shrinks to 0.618**60 of log(400)


def calibrated_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, C) logits -> (B, C) class probabilities, softmax(logits / T) in float32."""
    return torch.softmax(_scaled(logits, temperature), dim=1)


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits.float() / temperature


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T that minimises the negative log-likelihood of `labels` (N,) under `logits` (N, C).

    The NLL is convex in 1/T, hence unimodal in log T, so a golden-section search over
    log T finds its minimum deterministically, without gradients or a learning rate.
    """
    logits, labels = logits.detach(), labels.detach().long()

    def nll(log_t: float) -> float:
        return F.cross_entropy(_scaled(logits, math.exp(log_t)), labels).item()

    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    nll_a, nll_b = nll(a), nll(b)
    for _ in range(_SEARCH_STEPS):
        if nll_a <= nll_b:  # the minimum lies in [low, b]
            high, b, nll_b = b, a, nll_a
            a = high - ratio * (high - low)
            nll_a = nll(a)
        else:  # in [a, high]
            low, a, nll_a = a, b, nll_b
            b = low + ratio * (high - low)
            nll_b = nll(b)
    return math.exp((low + high) / 2)


def scored_at(
    labels: torch.Tensor, logits: torch.Tensor, temperature: float
) -> list[classification.Scored]:
    """Labelled logits as common.classification scores photos, at temperature T."""
    probabilities = calibrated_probabilities(logits, temperature)
    return classification.scored_from_probabilities(labels.tolist(), probabilities.tolist())


def calibration_error(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """The ECE (common.classification's definition and bins) of `logits` divided by T."""
    return classification.expected_calibration_error(scored_at(labels, logits, temperature))
