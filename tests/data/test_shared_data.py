"""Data tests on the shared photos (../shared/data) that tests, benchmarks and local training
runs read: every file the pipeline would keep decodes through its own validation
(common.imaging.decode_image with params.yaml's limits), every file carries a valid label, no
content is labelled both ways, and a split of real photos never leaks one content across
train, val and test."""

import hashlib
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from common.labels import CLASSES
from tests.conftest import KAGGLE, PETIMAGES, REPO_ROOT
from training import split
from training.manifest import MANIFEST_COLUMNS, read_csv, write_csv
from training.params import load_params
from training.sources import Scan, scan_source
from training.validate import FileResult, deduplicate, inspect_all, limits_from

DATASETS = {"petimages-180": PETIMAGES, "kaggle-dogs-vs-cats": KAGGLE}
# Documented in the shared data README: byte-identical, both cats.
DUPLICATE_PAIR = ("Cat/3411.jpg", "Cat/4435.jpg")
PARAMS = load_params(REPO_ROOT / "params.yaml")


@pytest.fixture(scope="module", params=sorted(DATASETS))
def scan(request: pytest.FixtureRequest) -> Scan:
    folder = DATASETS[request.param]
    if not folder.is_dir():
        pytest.skip(f"shared test photos not found at {folder}")
    return scan_source(folder)


@pytest.fixture(scope="module")
def inspected(scan: Scan) -> list[FileResult]:
    """The validate stage's verdict on every file: decoded, hashed, or a reason why not."""
    items = [(f.path, f.label) for f in scan.files]
    return inspect_all(items, limits_from(PARAMS.validate_), workers=2)


def test_every_file_has_a_label_from_its_folder_or_its_name(scan: Scan) -> None:
    assert (scan.skipped, scan.hidden) == ([], 0)
    assert {f.label for f in scan.files} == set(CLASSES)
    for f in scan.files:
        # petimages-180: Cat/12.jpg; kaggle-dogs-vs-cats: cat.12.jpg.
        assert f.label == f.relative.parts[0].lower() or f.relative.name.startswith(f.label + ".")


@pytest.mark.slow
def test_every_file_decodes_through_the_pipelines_validation(inspected: list[FileResult]) -> None:
    refused = [(r.path, r.reason, r.detail) for r in inspected if r.reason]
    assert refused == []


@pytest.mark.slow
def test_no_content_is_labelled_both_cat_and_dog(inspected: list[FileResult]) -> None:
    conflicts = deduplicate([r for r in inspected if not r.reason]).conflicts
    assert [r.path for r in conflicts] == []


def _sample(tmp_path: Path, per_class: int = 60) -> Path:
    """`per_class` photos of each class and the duplicate pair, copied from petimages-180."""
    if not PETIMAGES.is_dir():
        pytest.skip(f"shared test photos not found at {PETIMAGES}")
    source = tmp_path / "source"
    names = [f"{label}/{n}.jpg" for label in ("Cat", "Dog") for n in range(per_class)]
    for name in [*names, *DUPLICATE_PAIR]:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PETIMAGES / name, source / name)
    return source


def test_a_split_of_real_photos_never_puts_one_content_in_two_splits(tmp_path: Path) -> None:
    source = _sample(tmp_path)
    # The validate stage's manifest, but with both copies of the duplicate kept, so it is the
    # split alone that must keep them together.
    rows = [
        {
            "path": str(f.path),
            "label": f.label,
            "sha256": hashlib.sha256(f.path.read_bytes()).hexdigest(),
        }
        for f in scan_source(source).files
    ]
    write_csv(tmp_path / "manifest.csv", MANIFEST_COLUMNS, rows)

    split.split(tmp_path / "manifest.csv", tmp_path / "splits", PARAMS.split)

    splits_of: dict[str, set[str]] = defaultdict(set)
    listed = []
    for name in split.SPLITS:
        for row in read_csv(tmp_path / "splits" / f"{name}.csv"):
            # Hash the file itself: the check must not trust the manifest's column.
            splits_of[hashlib.sha256(Path(row["path"]).read_bytes()).hexdigest()].add(name)
            listed.append(row["path"])
    assert sorted(listed) == sorted(r["path"] for r in rows)
    assert {h: s for h, s in splits_of.items() if len(s) > 1} == {}
    assert len(splits_of) == len(rows) - 1  # the pair is one content
    pair = {str(source / name) for name in DUPLICATE_PAIR}
    assert len(pair & set(listed)) == 2
