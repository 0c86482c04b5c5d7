"""A person's review of the data, as a reproducible data change.

`data/label_overrides.csv` (tracked by git; a dependency of the ingest stage in dvc.yaml, so
DVC re-runs the pipeline when it changes) names photos by the SHA-256 of their bytes, the
same hash validation and the split use, and gives each a corrected label or `exclude`:

    sha256,label,note
    3f5a...e1,dog,filed under Cat/ but shows a beagle
    9b0c...77,exclude,an "Adopted" text banner

The label audit stage (training.audit) lists the likely suspects to review; only a person
writes this file. Ingest applies it while copying, so every later stage sees the corrected
data and the ingest report counts what changed.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from common.errors import DataSourceError
from common.labels import CLASSES
from training.manifest import read_csv
from training.sources import SourceFile

EXCLUDE = "exclude"
OVERRIDE_COLUMNS = ("sha256", "label", "note")
_HEX = set("0123456789abcdef")


@dataclass(frozen=True)
class Applied:
    files: list[SourceFile]  # what ingest copies, with corrected labels
    relabelled: list[dict[str, str]]  # {"path", "from", "to"}
    excluded: list[dict[str, str]]  # {"path", "label"}


def read_overrides(path: Path) -> dict[str, str]:
    """sha256 -> corrected label or `exclude`; no file means no overrides. A malformed row
    stops ingest with the row's line number, so a review mistake never trains silently."""
    if not path.is_file():
        return {}
    overrides: dict[str, str] = {}
    for line, row in enumerate(read_csv(path), start=2):
        digest = (row.get("sha256") or "").strip().lower()
        label = (row.get("label") or "").strip().lower()
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise DataSourceError(f"{path}:{line}: sha256 must be 64 hex digits, not {digest!r}")
        if label not in (*CLASSES, EXCLUDE):
            raise DataSourceError(
                f"{path}:{line}: label must be one of {', '.join((*CLASSES, EXCLUDE))}, "
                f"not {label!r}"
            )
        if overrides.get(digest, label) != label:
            raise DataSourceError(f"{path}:{line}: {digest} is overridden twice, differently")
        overrides[digest] = label
    return overrides


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def apply_overrides(files: Iterable[SourceFile], overrides: dict[str, str]) -> Applied:
    """`files` with each overridden photo relabelled or left out."""
    kept: list[SourceFile] = []
    relabelled: list[dict[str, str]] = []
    excluded: list[dict[str, str]] = []
    for item in files:
        wanted = overrides.get(file_sha256(item.path)) if overrides else None
        if wanted == EXCLUDE:
            excluded.append({"path": str(item.relative), "label": item.label})
            continue
        if wanted is not None and wanted != item.label:
            relabelled.append({"path": str(item.relative), "from": item.label, "to": wanted})
            item = replace(item, label=wanted)
        kept.append(item)
    return Applied(kept, relabelled, excluded)
