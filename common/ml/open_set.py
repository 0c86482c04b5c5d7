"""Is it a cat or a dog at all? The open-set signal beside the two-class answer.

A two-class model calls a rabbit, a banner or a screenshot "cat" or "dog", often confidently:
its softmax only ranks the two classes it knows. The EfficientNet-Lite backbones were trained
on ImageNet-1k, whose classes include 118 dog breeds and 5 domestic cats, so the checkpoint
keeps that ImageNet classifier beside ours. The summed ImageNet probability of those classes,
the *pet probability*, says how much the photo looks like a cat or a dog in the first place.

The threshold is chosen in training on the validation split (real pet photos only), as the
value that flags a stated share of them (`train.pet_flag_rate`); serving may override it
(`CATDOG_PET_THRESHOLD`). `bench/open_set.py` measures how many non-pet images it catches.
"""

import torch
from torch import nn

# ImageNet-1k class indices: 151 'Chihuahua' .. 268 'Mexican hairless' are the dog breeds;
# 281 'tabby' .. 285 'Egyptian cat' the domestic cats. Wolves, foxes and big cats stay out.
IMAGENET_DOGS = range(151, 269)
IMAGENET_DOMESTIC_CATS = range(281, 286)
IMAGENET_PET_CLASSES = (*IMAGENET_DOGS, *IMAGENET_DOMESTIC_CATS)
IMAGENET_CLASS_COUNT = 1000


def pet_probability(imagenet_logits: torch.Tensor) -> torch.Tensor:
    """(B, 1000) ImageNet logits -> (B,) summed probability of the cat and dog classes."""
    probabilities = torch.softmax(imagenet_logits.float(), dim=1)
    return probabilities[:, list(IMAGENET_PET_CLASSES)].sum(dim=1)


def classify(model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's logits (B, C) and the pet probability (B,), from one backbone pass; the
    pet probability is None for a model without an ImageNet head (the from-scratch baseline,
    checkpoints made before the head was kept)."""
    if getattr(model, "imagenet_head", None) is None:
        return model(batch), None
    return classify_features(model, model.features(batch))  # type: ignore[operator]


def classify_features(
    model: nn.Module, features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`classify` from pooled backbone features (B, D) already computed (training caches
    them): both heads, in eval mode."""
    logits = model._fc(model._dropout(features))  # type: ignore[operator]
    imagenet_head = getattr(model, "imagenet_head", None)
    return logits, None if imagenet_head is None else pet_probability(imagenet_head(features))


def looks_like_a_pet(pet_probability: float, threshold: float) -> bool:
    """The flag's one rule: at or above the threshold is a cat or a dog."""
    return pet_probability >= threshold


def flagged_share(pet_probabilities: torch.Tensor, threshold: float) -> float:
    """The share of these photos the flag calls "not a cat or dog"."""
    return float((pet_probabilities < threshold).float().mean())


def threshold_for_flag_rate(pet_probabilities: torch.Tensor, flag_rate: float) -> float:
    """The threshold below which `flag_rate` of these real pet photos fall: the largest
    value that flags at most that share of them."""
    if not 0 <= flag_rate < 1:
        raise ValueError(f"flag_rate must be in [0, 1), not {flag_rate}")
    ordered = torch.sort(pet_probabilities.float()).values
    flagged = int(flag_rate * len(ordered))  # photos allowed below the threshold
    return float(ordered[flagged]) if len(ordered) else 0.0
