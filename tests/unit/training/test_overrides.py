"""A person's label review (data/label_overrides.csv) is a data change: ingest relabels or
drops the named photos, so the validated manifest changes, and DVC tracks the file."""

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from common.errors import DataSourceError
from common.imaging import ImageLimits
from training.artifacts import LABEL_OVERRIDES
from training.ingest import ingest
from training.manifest import read_csv
from training.overrides import read_overrides
from training.validate import validate

ROOT = Path(__file__).resolve().parents[3]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _overrides(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["sha256,label,note", *(f"{digest},{label},reviewed" for digest, label in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_overrides_relabel_and_exclude_photos_and_change_the_manifest(
    tmp_path: Path, photo: Callable[[str], bytes]
) -> None:
    dog_filed_as_cat, junk, cat = photo("Dog/11.jpg"), photo("Dog/12.jpg"), photo("Cat/13.jpg")
    source = tmp_path / "src"
    _write(source / "Cat/a.jpg", dog_filed_as_cat)
    _write(source / "Cat/b.jpg", cat)
    _write(source / "Dog/c.jpg", junk)
    table = _overrides(
        tmp_path / "overrides.csv", [(_sha(dog_filed_as_cat), "dog"), (_sha(junk), "exclude")]
    )

    report = ingest(source, tmp_path / "raw", overrides=read_overrides(table))

    assert report.counts == {"cat": 1, "dog": 1}
    assert report.relabelled == [{"path": "Cat/a.jpg", "from": "cat", "to": "dog"}]
    assert report.excluded == [{"path": "Dog/c.jpg", "label": "dog"}]
    validate(
        tmp_path / "raw", tmp_path / "validated", tmp_path / "quarantine", ImageLimits(), workers=1
    )
    rows = {row["sha256"]: row["label"] for row in read_csv(tmp_path / "validated/manifest.csv")}
    assert rows == {_sha(dog_filed_as_cat): "dog", _sha(cat): "cat"}


def test_without_an_overrides_file_nothing_changes(tmp_path: Path) -> None:
    assert read_overrides(tmp_path / "absent.csv") == {}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("abc", "dog"), "64 hex digits"),
        (("a" * 64, "rabbit"), "label must be one of cat, dog, exclude"),
    ],
)
def test_a_malformed_row_stops_ingest_with_its_line(
    tmp_path: Path, row: tuple[str, str], message: str
) -> None:
    table = _overrides(tmp_path / "overrides.csv", [("b" * 64, "cat"), row])
    with pytest.raises(DataSourceError, match=f"overrides.csv:3: .*{message}"):
        read_overrides(table)


def test_one_photo_overridden_two_ways_is_refused(tmp_path: Path) -> None:
    table = _overrides(tmp_path / "overrides.csv", [("c" * 64, "cat"), ("c" * 64, "exclude")])
    with pytest.raises(DataSourceError, match="overridden twice"):
        read_overrides(table)


def test_the_overrides_file_is_tracked_by_git_and_is_an_ingest_dependency_in_dvc() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert str(LABEL_OVERRIDES) in stages["ingest"]["deps"]
    header = (ROOT / LABEL_OVERRIDES).read_text().splitlines()[0]
    assert header == "sha256,label,note"
    read_overrides(ROOT / LABEL_OVERRIDES)  # the committed review is well formed
