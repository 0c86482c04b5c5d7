"""The label space, in the order the model's output logits use."""

from typing import Final

CLASSES: Final[tuple[str, ...]] = ("cat", "dog")


def label_index(label: str) -> int:
    """Index of a label, accepting any case ("Cat", "DOG")."""
    return CLASSES.index(label.strip().lower())
