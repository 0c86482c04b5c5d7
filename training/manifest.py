"""The columns of the data stages' CSV files, and the small CSV/JSON helpers they share.

Rows name images by paths relative to the repository root (the working directory of every
DVC stage); where the files live is training.artifacts.
"""

import csv
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MANIFEST_COLUMNS = ("path", "label", "sha256", "width", "height", "format", "mode")
QUARANTINE_COLUMNS = ("path", "label", "reason", "detail")
DUPLICATE_COLUMNS = ("sha256", "kept", "dropped", "labels", "action")
SPLIT_COLUMNS = ("path", "label", "sha256")


def write_csv(path: Path, columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Write `rows` (extra keys ignored) with a header line; returns how many rows were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def display_path(path: Path) -> str:
    """`path` relative to the working directory when it lies under it, else absolute (POSIX).

    Symlinks are deliberately not resolved: DVC may link outputs into its cache.
    """
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute, os.getcwd())
    chosen = absolute if relative == ".." or relative.startswith(".." + os.sep) else relative
    return Path(chosen).as_posix()
