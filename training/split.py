"""Stage 3: assign every validated image to train, val or test by its content hash.

The split of an image depends only on the seed and the image's bytes: the same seed gives
the same split, byte-identical copies always land together (no leakage), and adding images
never moves the ones already assigned. The rule is per image, so each class is split in
the same proportions (stratified in expectation; summary.json reports the real fractions).
Run as `python -m training.split`.
"""

import hashlib
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from common.labels import CLASSES
from common.logging_setup import configure_logging
from common.settings import get_settings
from training.artifacts import SPLITS_DIR, VALIDATED_MANIFEST
from training.manifest import SPLIT_COLUMNS, read_csv, write_csv, write_json
from training.params import SplitParams, load_params

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_HEX_DIGITS = 15  # 60 bits: plenty of resolution, and exact in a float64


def unit_interval(content_sha256: str, seed: int) -> float:
    """A number in [0, 1) fixed by the seed and the image content, uniform across images."""
    digest = hashlib.sha256(f"{seed}:{content_sha256}".encode()).hexdigest()
    return int(digest[:_HEX_DIGITS], 16) / 16**_HEX_DIGITS


def assign_split(content_sha256: str, seed: int, train: float, val: float) -> str:
    """ "train", "val" or "test" for one image."""
    u = unit_interval(content_sha256, seed)
    if u < train:
        return "train"
    return "val" if u < train + val else "test"


def split_rows(
    rows: Iterable[Mapping[str, str]], params: SplitParams
) -> dict[str, list[dict[str, str]]]:
    """Manifest rows grouped by split, each list sorted by path, with SPLIT_COLUMNS only."""
    if params.train + params.val >= 1:
        raise ValueError(
            f"split.train + split.val must be below 1 so the test split is not empty "
            f"(got {params.train} + {params.val})"
        )
    out: dict[str, list[dict[str, str]]] = {name: [] for name in SPLITS}
    for row in rows:
        name = assign_split(row["sha256"], params.seed, params.train, params.val)
        out[name].append({column: row[column] for column in SPLIT_COLUMNS})
    for members in out.values():
        members.sort(key=lambda r: r["path"])
    return out


def summarize(splits: Mapping[str, list[dict[str, str]]], params: SplitParams) -> dict[str, Any]:
    """Counts per split and class, and each class's fraction in each split."""
    counts = {name: Counter(r["label"] for r in rows) for name, rows in splits.items()}
    totals = {label: sum(counts[name][label] for name in SPLITS) for label in CLASSES}
    return {
        "seed": params.seed,
        "target": {"train": params.train, "val": params.val, "test": 1 - params.train - params.val},
        "counts": {
            name: {**{label: counts[name][label] for label in CLASSES}, "total": len(splits[name])}
            for name in SPLITS
        },
        "class_fractions": {
            label: {name: round(counts[name][label] / max(totals[label], 1), 4) for name in SPLITS}
            for label in CLASSES
        },
    }


def split(manifest: Path, out_dir: Path, params: SplitParams) -> dict[str, Any]:
    """Write train.csv, val.csv, test.csv and summary.json into `out_dir`."""
    splits = split_rows(read_csv(manifest), params)
    for name, rows in splits.items():
        write_csv(out_dir / f"{name}.csv", SPLIT_COLUMNS, rows)
        empty = [label for label in CLASSES if not any(r["label"] == label for r in rows)]
        if empty:
            logger.warning("the %s split has no %s images", name, " or ".join(empty))
    summary = summarize(splits, params)
    write_json(out_dir / "summary.json", summary)
    return summary


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    params = load_params()
    manifest = VALIDATED_MANIFEST
    if not manifest.is_file():
        print(
            f"split failed: {manifest} is missing; run `python -m training.validate` first",
            file=sys.stderr,
        )
        return 2
    summary = split(manifest, SPLITS_DIR, params.split)
    counts = ", ".join(f"{name} {summary['counts'][name]['total']}" for name in SPLITS)
    print(f"split: {counts} -> {SPLITS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
