"""Where a model came from: the git commit and the hashes of the data it saw."""

import hashlib
import subprocess
from pathlib import Path

from training.artifacts import SPLITS_DIR

# Measurements, not code: `make bench` rewrites the tracked history of its runs
# (bench/history.py), which must not mark every later run's commit as dirty.
NOT_CODE = ":(top,exclude)bench/results"


def git_commit() -> str:
    """HEAD's commit, with `-dirty` when tracked code differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)", NOT_CODE],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def data_lineage(splits_dir: Path = SPLITS_DIR) -> dict[str, str]:
    """sha256 of each split manifest: a manifest names every file by its content hash, so
    equal manifest hashes mean the model saw exactly the same images."""
    return {
        f"data.{name}_manifest_sha256": hashlib.sha256(
            (splits_dir / f"{name}.csv").read_bytes()
        ).hexdigest()
        for name in ("train", "val", "test")
        if (splits_dir / f"{name}.csv").is_file()
    }
