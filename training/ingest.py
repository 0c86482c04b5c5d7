"""Stage 1: copy labelled photos from a source into `data/raw/<label>/`.

The source is the Kaggle "Cat and Dog" set (downloaded with kagglehub) or any local folder,
read by training.sources (labels from class folders or Kaggle file names), with a person's
corrections from `data/label_overrides.csv` applied (training.overrides). Nothing is decoded
here: a broken file is copied like any other, and validation decides what is bad. Run as
`python -m training.ingest`.
"""

import logging
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common.errors import DataSourceError
from common.labels import CLASSES, cap_per_class
from common.logging_setup import configure_logging
from common.settings import get_settings
from training.artifacts import LABEL_OVERRIDES, RAW_DIR
from training.manifest import write_json
from training.overrides import apply_overrides, read_overrides
from training.params import DataParams, load_params
from training.sources import HOW_TO_USE_A_FOLDER, SourceFile, scan_source

logger = logging.getLogger(__name__)

KAGGLE_SOURCE = "kaggle"
REPORT_NAME = "ingest.json"


@dataclass(frozen=True)
class IngestReport:
    source: str
    counts: dict[str, int]
    available: dict[str, int]
    max_per_class: int
    skipped: list[dict[str, str]]
    hidden_ignored: int
    relabelled: list[dict[str, str]]
    excluded: list[dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": self.counts,
            "total": sum(self.counts.values()),
            "available": self.available,
            "max_per_class": self.max_per_class,
            "skipped": self.skipped,
            "skipped_count": len(self.skipped),
            "hidden_ignored": self.hidden_ignored,
            "relabelled": self.relabelled,
            "excluded": self.excluded,
        }


def destination_names(files: list[SourceFile]) -> list[str]:
    """The original file name, or, where two files of one class share it (ignoring case),
    the name prefixed with its source folders: `a/Cat/1.jpg` -> `a__Cat__1.jpg`."""
    seen = Counter((f.label, f.relative.name.lower()) for f in files)
    return [
        f.relative.name
        if seen[(f.label, f.relative.name.lower())] == 1
        else "__".join(f.relative.parts)
        for f in files
    ]


def ingest(
    source: Path,
    out_dir: Path,
    *,
    max_per_class: int = 0,
    source_name: str | None = None,
    overrides: dict[str, str] | None = None,
) -> IngestReport:
    """Rebuild `out_dir` from scratch with copies of every labelled file under `source`,
    relabelled or left out as `overrides` (sha256 -> label or "exclude") say."""
    if _is_within(source, out_dir):
        raise DataSourceError(
            f"the data folder {source} lies inside {out_dir}, which every ingest run deletes; "
            "point data.source somewhere else"
        )
    scan = scan_source(source, exclude=out_dir)
    if not scan.files:
        raise DataSourceError(
            f"no labelled images found under {source} ({len(scan.skipped)} files without a "
            f"cat/dog label); {HOW_TO_USE_A_FOLDER}"
        )
    applied = apply_overrides(scan.files, overrides or {})
    chosen = cap_per_class(applied.files, max_per_class)
    _copy_all(chosen, out_dir)
    report = IngestReport(
        source=source_name or str(source),
        counts={label: sum(f.label == label for f in chosen) for label in CLASSES},
        available={label: sum(f.label == label for f in applied.files) for label in CLASSES},
        max_per_class=max_per_class,
        skipped=scan.skipped,
        hidden_ignored=scan.hidden,
        relabelled=applied.relabelled,
        excluded=applied.excluded,
    )
    write_json(out_dir / REPORT_NAME, report.to_json())
    return report


def _copy_all(files: list[SourceFile], out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    for label in CLASSES:
        (out_dir / label).mkdir(parents=True)
    names = destination_names(files)
    for item, name in tqdm(list(zip(files, names, strict=True)), desc="ingest", unit="file"):
        shutil.copyfile(item.path, out_dir / item.label / name)
    logger.info("copied %d files into %s", len(files), out_dir)


def _is_within(path: Path, folder: Path) -> bool:
    inner, outer = os.path.abspath(path), os.path.abspath(folder)
    return inner == outer or inner.startswith(outer + os.sep)


def download_kaggle(handle: str) -> Path:
    """The local folder of the Kaggle dataset `handle`, downloaded (or cached) by kagglehub."""
    try:
        import kagglehub  # imported here: slow, and only this source needs it

        return Path(kagglehub.dataset_download(handle))
    except Exception as exc:  # network, auth, disk: all mean "use a local folder instead"
        raise DataSourceError(
            f"could not download the Kaggle dataset {handle!r} ({type(exc).__name__}: {exc}). "
            f"No network or no Kaggle access? Use a local folder of photos instead: "
            f"{HOW_TO_USE_A_FOLDER}"
        ) from exc


def resolve_source(data: DataParams) -> Path:
    """`data.source` as a folder: "kaggle" downloads; anything else is a path (cwd-relative)."""
    if data.source.strip().lower() == KAGGLE_SOURCE:
        return download_kaggle(data.kaggle_handle)
    return Path(data.source).expanduser()


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    params = load_params()
    try:
        source = resolve_source(params.data)
        logger.info("ingesting from %s", source)
        report = ingest(
            source,
            RAW_DIR,
            max_per_class=params.data.max_per_class,
            source_name=params.data.source,
            overrides=read_overrides(LABEL_OVERRIDES),
        )
    except DataSourceError as exc:
        print(f"ingest failed: {exc.message}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{n} {label}" for label, n in report.counts.items())
    print(
        f"ingest: {counts} -> {RAW_DIR} ({len(report.skipped)} skipped; label overrides: "
        f"{len(report.relabelled)} relabelled, {len(report.excluded)} excluded)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
