"""The labelled files of a source folder, by the rules every training entry point shares:
labels from class folders (`Cat/`, `dogs/`, any case, at any depth) or from Kaggle file names
(`cat.123.jpg`); hidden entries ignored; anything that is not clearly a non-photo kept, so
validation sees broken files too. The ingest stage copies what `scan_source` finds, and
`python -m training.evaluate --data FOLDER` scores it.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from common.errors import DataSourceError
from common.labels import infer_label, label_hints

# Files that are clearly not photos, whatever folder they sit in. Anything else, including
# an unknown extension, is copied: a text file renamed .jpg must reach validation.
_NOT_IMAGE_NAMES = frozenset({"thumbs.db", "desktop.ini"})
_NOT_IMAGE_SUFFIXES = frozenset(
    {".txt", ".md", ".csv", ".tsv", ".json", ".yaml", ".yml", ".xml", ".html", ".doc", ".docx"}
    | {".db", ".ini", ".log", ".py", ".ipynb", ".dvc"}
)
HOW_TO_USE_A_FOLDER = (
    "run `make up DATA=/path/to/folder` or `dvc exp run -S data.source=/path/to/folder`, "
    "where the folder holds Cat/ and Dog/ sub-folders (any case) or Kaggle-style names "
    "such as cat.123.jpg"
)


@dataclass(frozen=True)
class SourceFile:
    path: Path  # absolute or cwd-relative location in the source
    relative: PurePosixPath  # location inside the source folder
    label: str


@dataclass
class Scan:
    files: list[SourceFile] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    hidden: int = 0


def scan_source(source: Path, exclude: Path | None = None) -> Scan:
    """Every labelled file under `source`, sorted by relative path; hidden entries ignored."""
    if not source.is_dir():
        raise DataSourceError(
            f"the data folder {source} does not exist or is not a folder; {HOW_TO_USE_A_FOLDER}"
        )
    scan = Scan()
    excluded = os.path.abspath(exclude) if exclude is not None else None
    for directory, subdirs, names in os.walk(source):
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not d.startswith(".") and os.path.abspath(os.path.join(directory, d)) != excluded
        )
        for name in sorted(names):
            path = Path(directory, name)
            if name.startswith("."):
                scan.hidden += 1
            elif path.is_file():
                _classify(scan, path, PurePosixPath(path.relative_to(source).as_posix()))
    scan.files.sort(key=lambda f: f.relative.as_posix())
    scan.skipped.sort(key=lambda s: s["path"])
    return scan


def _classify(scan: Scan, path: Path, relative: PurePosixPath) -> None:
    if relative.name.lower() in _NOT_IMAGE_NAMES or relative.suffix.lower() in _NOT_IMAGE_SUFFIXES:
        scan.skipped.append({"path": relative.as_posix(), "reason": "not_an_image_file"})
        return
    label = infer_label(relative)
    if label is None:
        reason = "conflicting_labels" if all(label_hints(relative)) else "no_label"
        scan.skipped.append({"path": relative.as_posix(), "reason": reason})
    else:
        scan.files.append(SourceFile(path, relative, label))
