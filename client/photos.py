"""Which files of a folder are photos: all of them (what `catdog jobs submit` uploads), or the
labelled ones, labelled by the rules training's ingest stage uses (`common.labels.infer_label`)."""

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from common.labels import infer_label

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def is_photo(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_photos(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_photo(p))


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    label: str  # "cat" or "dog"


def labelled_photos(folder: Path) -> tuple[list[LabelledPhoto], list[Path]]:
    """(labelled photos sorted by relative path, image files without a label). Hidden files
    and folders are ignored, and so is anything without an image suffix."""
    found: list[LabelledPhoto] = []
    unlabelled: list[Path] = []
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(directory, name)
            if name.startswith(".") or not is_photo(path):
                continue
            label = infer_label(PurePosixPath(path.relative_to(folder).as_posix()))
            if label is None:
                unlabelled.append(path)
            else:
                found.append(LabelledPhoto(path, label))
    found.sort(key=lambda p: p.path.relative_to(folder).as_posix())
    return found, unlabelled
