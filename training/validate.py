"""Stage 2: decode every ingested file, quarantine the bad ones, drop exact duplicates.

Each file goes through `common.imaging.decode_image`, the function serving uses, so a photo
the service would refuse is a photo training never sees. Files are decoded in parallel on
every CPU core. Run as `python -m training.validate`.
"""

import hashlib
import logging
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common.errors import CatDogError, DataSourceError, ImageTooLargeError
from common.imaging import ImageLimits, decode_image
from common.labels import CLASSES
from common.logging_setup import configure_logging
from common.settings import get_settings
from training.artifacts import MANIFEST_NAME, QUARANTINE_DIR, RAW_DIR, VALIDATED_DIR
from training.manifest import (
    DUPLICATE_COLUMNS,
    MANIFEST_COLUMNS,
    QUARANTINE_COLUMNS,
    display_path,
    write_csv,
    write_json,
)
from training.params import ValidateParams, load_params

logger = logging.getLogger(__name__)

_SERIAL_BELOW = 64  # a process pool costs more than it saves on a handful of files


@dataclass(frozen=True)
class FileResult:
    path: str  # relative to the working directory (the repo root), POSIX separators
    label: str
    sha256: str = ""
    width: int = 0
    height: int = 0
    format: str = ""
    mode: str = ""  # the mode before conversion to RGB
    reason: str = ""  # empty when the file is a valid image
    detail: str = ""


@dataclass(frozen=True)
class Deduplicated:
    kept: list[FileResult]
    rows: list[dict[str, str]]  # one duplicates.csv row per dropped copy
    conflicts: list[FileResult]  # every copy of a file labelled both ways, reason label_conflict
    groups: int


def list_raw(raw_dir: Path) -> list[tuple[Path, str]]:
    """(path, label) of every file in `raw_dir/<label>/`, sorted by path."""
    if not raw_dir.is_dir():
        raise DataSourceError(f"{raw_dir} does not exist; run `python -m training.ingest` first")
    found = [
        (path, label)
        for label in CLASSES
        if (raw_dir / label).is_dir()
        for path in (raw_dir / label).iterdir()
        if path.is_file() and not path.name.startswith(".")
    ]
    return sorted(found, key=lambda item: item[0].as_posix())


def inspect_file(path: Path, label: str, limits: ImageLimits) -> FileResult:
    """Hash and fully decode one file; any failure becomes a reason, never an exception."""
    shown = display_path(path)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:  # refuse before reading a huge file into memory
            raise ImageTooLargeError(f"the file is {size} bytes; the limit is {limits.max_bytes}")
        data = path.read_bytes()
    except CatDogError as exc:
        return FileResult(shown, label, reason=exc.reason, detail=exc.message)
    except OSError as exc:
        return FileResult(shown, label, reason="unreadable", detail=str(exc))
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():  # e.g. "Corrupt EXIF data": noise for 16k files
            warnings.simplefilter("ignore")
            decoded = decode_image(data, limits)
    except CatDogError as exc:
        return FileResult(shown, label, digest, reason=exc.reason, detail=exc.message)
    except Exception as exc:  # one strange file must never stop the run
        detail = f"{type(exc).__name__}: {exc}"
        return FileResult(shown, label, digest, reason="undecodable", detail=detail)
    return FileResult(
        shown, label, digest, decoded.width, decoded.height, decoded.format, decoded.original_mode
    )


def _inspect_item(item: tuple[Path, str], limits: ImageLimits) -> FileResult:
    return inspect_file(item[0], item[1], limits)


def inspect_all(
    items: list[tuple[Path, str]], limits: ImageLimits, workers: int | None = None
) -> list[FileResult]:
    """`inspect_file` on every item, in input order, on `workers` processes (all cores)."""
    work = partial(_inspect_item, limits=limits)
    workers = workers or os.cpu_count() or 1
    progress = partial(tqdm, total=len(items), desc="validate", unit="file")
    if workers == 1 or len(items) < _SERIAL_BELOW:
        return list(progress(map(work, items)))
    chunksize = max(1, min(256, len(items) // (workers * 8)))
    # forkserver, not fork: a fork of a process that has other threads (a test runner, a
    # caller with a Redis client) can inherit a held lock and hang the pool forever.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(progress(pool.map(work, items, chunksize=chunksize)))


def deduplicate(valid: list[FileResult]) -> Deduplicated:
    """Keep the first copy (by path) of byte-identical files; drop all copies whose labels differ."""
    groups: dict[str, list[FileResult]] = defaultdict(list)
    for result in valid:
        groups[result.sha256].append(result)
    kept, rows, conflicts, duplicate_groups = [], [], [], 0
    for digest, members in groups.items():
        members.sort(key=lambda r: r.path)
        if len(members) == 1:
            kept.append(members[0])
            continue
        duplicate_groups += 1
        labels = sorted({m.label for m in members})
        if len(labels) == 1:
            kept.append(members[0])
            rows += [
                _dup_row(digest, members[0].path, m.path, labels, "kept_one") for m in members[1:]
            ]
            continue
        rows += [_dup_row(digest, "", m.path, labels, "dropped_conflict") for m in members]
        paths = ", ".join(m.path for m in members)
        detail = f"byte-identical files labelled {'/'.join(labels)}: {paths}"
        conflicts += [replace(m, reason="label_conflict", detail=detail) for m in members]
    kept.sort(key=lambda r: r.path)
    return Deduplicated(kept, sorted(rows, key=lambda r: r["dropped"]), conflicts, duplicate_groups)


def _dup_row(
    digest: str, kept: str, dropped: str, labels: list[str], action: str
) -> dict[str, str]:
    return {
        "sha256": digest,
        "kept": kept,
        "dropped": dropped,
        "labels": "|".join(labels),
        "action": action,
    }


def copy_quarantined(bad: Iterable[FileResult], quarantine_dir: Path) -> None:
    """Copy each rejected file to `quarantine_dir/<reason>/<label>/` for a person to look at."""
    for result in bad:
        target = quarantine_dir / result.reason / result.label
        target.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(result.path, target / Path(result.path).name)
        except OSError as exc:
            logger.warning("could not copy %s to quarantine: %s", result.path, exc)


def validate(
    raw_dir: Path,
    out_dir: Path,
    quarantine_dir: Path,
    limits: ImageLimits,
    *,
    workers: int | None = None,
) -> dict[str, Any]:
    """Write manifest.csv, quarantine.csv, duplicates.csv and summary.json into `out_dir`."""
    items = list_raw(raw_dir)
    results = inspect_all(items, limits, workers)
    dedup = deduplicate([r for r in results if not r.reason])
    bad = sorted([r for r in results if r.reason] + dedup.conflicts, key=lambda r: r.path)
    for folder in (out_dir, quarantine_dir):
        if folder.exists():
            shutil.rmtree(folder)
    write_csv(out_dir / MANIFEST_NAME, MANIFEST_COLUMNS, _as_dicts(dedup.kept))
    write_csv(out_dir / "quarantine.csv", QUARANTINE_COLUMNS, _as_dicts(bad))
    write_csv(out_dir / "duplicates.csv", DUPLICATE_COLUMNS, dedup.rows)
    quarantine_dir.mkdir(parents=True)
    copy_quarantined(bad, quarantine_dir)
    summary = summarize(results, dedup, bad)
    write_json(out_dir / "summary.json", summary)
    return summary


def _as_dicts(results: Iterable[FileResult]) -> Iterator[dict[str, Any]]:
    return (asdict(r) for r in results)


def summarize(
    results: list[FileResult], dedup: Deduplicated, bad: list[FileResult]
) -> dict[str, Any]:
    kept = dedup.kept
    return {
        "total": len(results),
        "valid": len(kept),
        "per_class": {label: sum(r.label == label for r in kept) for label in CLASSES},
        "quarantined": len(bad),
        "quarantined_by_reason": dict(sorted(Counter(r.reason for r in bad).items())),
        "duplicate_groups": dedup.groups,
        "dropped_duplicates": sum(row["action"] == "kept_one" for row in dedup.rows),
        "label_conflict_files": len(dedup.conflicts),
        "converted_modes": dict(sorted(Counter(r.mode for r in kept if r.mode != "RGB").items())),
        "formats": dict(sorted(Counter(r.format for r in kept).items())),
    }


def limits_from(params: ValidateParams) -> ImageLimits:
    return ImageLimits(
        max_bytes=params.max_bytes, max_pixels=params.max_pixels, min_side=params.min_side
    )


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    params = load_params()
    started = time.perf_counter()
    try:
        summary = validate(RAW_DIR, VALIDATED_DIR, QUARANTINE_DIR, limits_from(params.validate_))
    except DataSourceError as exc:
        print(f"validate failed: {exc.message}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    print(
        f"validate: {summary['valid']} valid of {summary['total']} in {elapsed:.1f}s; "
        f"quarantined {summary['quarantined']} {summary['quarantined_by_reason']}; "
        f"dropped {summary['dropped_duplicates']} duplicate copies"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
