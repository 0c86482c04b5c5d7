"""training.artifacts and dvc.yaml describe one layout: every path a stage reads or writes
through training.artifacts is one dvc.yaml tracks (or the folder of ones it tracks), so DVC
caches, compares and restores what the code really writes."""

from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from training import artifacts

ROOT = Path(__file__).resolve().parents[3]


def _named(entries: list[Any]) -> set[str]:
    # A dvc.yaml entry is a path, or a one-key mapping from a path to its options.
    return {entry if isinstance(entry, str) else next(iter(entry)) for entry in entries}


def tracked_by_dvc() -> set[str]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values()
    return {
        path
        for stage in stages
        for key in ("deps", "outs", "metrics", "plots")
        for path in _named(stage.get(key, []))
    }


def test_every_artifact_path_is_tracked_by_dvc_yaml() -> None:
    tracked = tracked_by_dvc()
    paths = {name: value for name, value in vars(artifacts).items() if isinstance(value, Path)}
    untracked = {
        name: path.as_posix()
        for name, path in paths.items()
        if path.as_posix() not in tracked
        and not any(PurePosixPath(t).parent == PurePosixPath(path.as_posix()) for t in tracked)
    }
    assert untracked == {}
