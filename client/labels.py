"""Labels of a labelled photo folder, by the rules the training ingest stage uses: class
folders (`Cat/`, `dogs/`, any case, at any depth, the nearest one wins) or Kaggle file names
(`cat.123.jpg`); a file whose name and folder disagree has no label.

A copy of `training.ingest`'s rules rather than an import: the worker image, which runs
`evaluate-deployment`, ships `client/` and `common/` but not `training/`.
(tests/unit/monitoring/test_evaluate_deployment.py checks that both agree.)
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_FOLDER_LABELS = {"cat": "cat", "cats": "cat", "dog": "dog", "dogs": "dog"}
_KAGGLE_NAME = re.compile(r"^(cat|dog)[._-]\d+", re.IGNORECASE)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    label: str  # "cat" or "dog"


def infer_label(relative: PurePosixPath) -> str | None:
    """The label a path (relative to the folder) implies, or None for none or two."""
    match = _KAGGLE_NAME.match(relative.name)
    from_name = match.group(1).lower() if match else None
    folders = [
        _FOLDER_LABELS[p.lower()] for p in relative.parts[:-1] if p.lower() in _FOLDER_LABELS
    ]
    from_folder = folders[-1] if folders else None
    if from_name and from_folder and from_name != from_folder:
        return None
    return from_name or from_folder


def labelled_photos(folder: Path) -> tuple[list[LabelledPhoto], list[Path]]:
    """(labelled photos sorted by relative path, image files without a label). Hidden files
    and folders are ignored, and so is anything without an image suffix."""
    found: list[LabelledPhoto] = []
    unlabelled: list[Path] = []
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(directory, name)
            if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            label = infer_label(PurePosixPath(path.relative_to(folder).as_posix()))
            if label is None:
                unlabelled.append(path)
            else:
                found.append(LabelledPhoto(path, label))
    found.sort(key=lambda p: p.path.relative_to(folder).as_posix())
    return found, unlabelled


def cap_per_class(photos: list[LabelledPhoto], max_per_class: int) -> list[LabelledPhoto]:
    """The first `max_per_class` photos of each label, in order; 0 keeps all."""
    if max_per_class <= 0:
        return list(photos)
    taken: dict[str, int] = {}
    kept = []
    for photo in photos:
        if taken.get(photo.label, 0) < max_per_class:
            taken[photo.label] = taken.get(photo.label, 0) + 1
            kept.append(photo)
    return kept
