"""The label space, in the order the model's output logits use, and how a file's place in a
labelled folder names its label. Training's ingest stage and the client's deployment
evaluation both read folders by these rules (torch-free: every image ships common/)."""

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Final, Protocol, TypeVar

CLASSES: Final[tuple[str, ...]] = ("cat", "dog")

_FOLDER_LABELS = {"cat": "cat", "cats": "cat", "dog": "dog", "dogs": "dog"}
_KAGGLE_NAME = re.compile(r"^(cat|dog)[._-]\d+", re.IGNORECASE)


def label_index(label: str) -> int:
    """Index of a label, accepting any case ("Cat", "DOG")."""
    return CLASSES.index(label.strip().lower())


def label_hints(relative: PurePosixPath) -> tuple[str | None, str | None]:
    """(label from a Kaggle-style file name, label from the nearest class folder)."""
    match = _KAGGLE_NAME.match(relative.name)
    folders = [
        _FOLDER_LABELS[p.lower()] for p in relative.parts[:-1] if p.lower() in _FOLDER_LABELS
    ]
    return (match.group(1).lower() if match else None, folders[-1] if folders else None)


def infer_label(relative: PurePosixPath) -> str | None:
    """The label a path (relative to its folder) implies: from a class folder (`Cat/`,
    `dogs/`, any case, the nearest wins) or a Kaggle name (`cat.123.jpg`); None when it
    implies none or two different ones."""
    from_name, from_folder = label_hints(relative)
    if from_name and from_folder and from_name != from_folder:
        return None
    return from_name or from_folder


class _Labelled(Protocol):
    @property
    def label(self) -> str: ...


L = TypeVar("L", bound=_Labelled)


def cap_per_class(items: Sequence[L], max_per_class: int) -> list[L]:
    """The first `max_per_class` items of each label, in the given order; 0 keeps all."""
    if max_per_class <= 0:
        return list(items)
    taken: Counter[str] = Counter()
    kept = []
    for item in items:
        if taken[item.label] < max_per_class:
            taken[item.label] += 1
            kept.append(item)
    return kept
