import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from common.errors import DataSourceError
from common.imaging import ImageLimits
from training import validate as validate_module
from training.manifest import read_csv
from training.validate import inspect_all, list_raw, validate

GOOD = {"cat": ["Cat/10.jpg", "Cat/11.jpg", "Cat/12.jpg"], "dog": ["Dog/10.jpg", "Dog/11.jpg"]}

# crafted file -> the quarantine reason validation must give it
BAD = {
    "zero_bytes": "empty",
    "truncated_jpeg": "truncated",
    "text_renamed_jpg": "not_an_image",
    "random_bytes": "not_an_image",
    "tiny_10x10": "too_small",
    "bomb_50000x50000": "decompression_bomb",
    "pdf_magic": "unsupported_media_type",
}
CONVERTED = {
    "cmyk_jpeg": "CMYK",
    "grayscale_jpeg": "L",
    "palette_png": "P",
    "rgba_png": "RGBA",
    "gray16_png": "I;16",
}


def _raw_tree(root: Path, photo: Callable[[str], bytes], crafted: dict[str, bytes]) -> Path:
    raw = root / "data" / "raw"
    for label, names in GOOD.items():
        for name in names:
            _write(raw / label / Path(name).name, photo(name))
    for name in [*BAD, *CONVERTED, "exif_rotated_jpeg"]:
        _write(raw / "cat" / f"{name}.jpg", crafted[name])
    return raw


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _run() -> dict[str, Any]:
    return validate(
        Path("data/raw"), Path("data/validated"), Path("data/quarantine"), ImageLimits()
    )


@pytest.fixture
def repo(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    photo: Callable[[str], bytes],
    crafted: dict[str, bytes],
) -> Path:
    """A fresh working directory holding data/raw with good, odd and broken files."""
    monkeypatch.chdir(tmp_path)
    _raw_tree(tmp_path, photo, crafted)
    return tmp_path


def _by_path(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["path"]: row for row in rows}


@pytest.mark.parametrize(("name", "reason"), BAD.items(), ids=[f"{n}-{r}" for n, r in BAD.items()])
def test_validate_quarantines_broken_file_with_its_reason(
    repo: Path, name: str, reason: str
) -> None:
    _run()
    quarantine = _by_path(read_csv(repo / "data/validated/quarantine.csv"))
    row = quarantine[f"data/raw/cat/{name}.jpg"]
    assert row["reason"] == reason
    assert row["label"] == "cat"
    assert row["detail"]
    assert (repo / "data/quarantine" / reason / "cat" / f"{name}.jpg").is_file()


def test_validate_quarantines_truncated_jpeg_with_reason_truncated(repo: Path) -> None:
    summary = _run()
    assert summary["quarantined_by_reason"]["truncated"] == 1


def test_validate_quarantines_file_over_max_bytes_with_reason_too_large(repo: Path) -> None:
    validate(Path("data/raw"), Path("out"), Path("q"), ImageLimits(max_bytes=2_000))
    reasons = {row["path"]: row["reason"] for row in read_csv(repo / "out/quarantine.csv")}
    assert reasons["data/raw/cat/10.jpg"] == "too_large"


def test_validate_writes_manifest_of_valid_images_with_repo_relative_paths(repo: Path) -> None:
    _run()
    rows = read_csv(repo / "data/validated/manifest.csv")
    assert list(rows[0]) == ["path", "label", "sha256", "width", "height", "format", "mode"]
    paths = [row["path"] for row in rows]
    assert paths == sorted(paths)
    good = _by_path(rows)["data/raw/dog/11.jpg"]
    assert (good["label"], good["width"], good["height"], good["format"], good["mode"]) == (
        "dog",
        "180",
        "180",
        "JPEG",
        "RGB",
    )
    assert len(good["sha256"]) == 64
    assert not any(f"/{name}.jpg" in path for name in BAD for path in paths)


def test_validate_keeps_unusual_modes_and_records_each_original_mode(repo: Path) -> None:
    summary = _run()
    manifest = _by_path(read_csv(repo / "data/validated/manifest.csv"))
    for name, mode in CONVERTED.items():
        assert manifest[f"data/raw/cat/{name}.jpg"]["mode"] == mode
    assert summary["converted_modes"] == {mode: 1 for mode in CONVERTED.values()}
    assert manifest["data/raw/cat/palette_png.jpg"]["format"] == "PNG"  # the bytes, not the name


def test_validate_records_exif_rotated_jpeg_with_swapped_width_and_height(repo: Path) -> None:
    _run()
    row = _by_path(read_csv(repo / "data/validated/manifest.csv"))[
        "data/raw/cat/exif_rotated_jpeg.jpg"
    ]
    assert (row["width"], row["height"]) == ("80", "120")  # stored 120x80, orientation 6


def test_validate_keeps_first_copy_of_real_duplicate_pair(
    repo: Path, photo: Callable[[str], bytes]
) -> None:
    _write(repo / "data/raw/cat/3411.jpg", photo("Cat/3411.jpg"))
    _write(repo / "data/raw/cat/4435.jpg", photo("Cat/4435.jpg"))
    summary = _run()
    paths = {row["path"] for row in read_csv(repo / "data/validated/manifest.csv")}
    assert "data/raw/cat/3411.jpg" in paths
    assert "data/raw/cat/4435.jpg" not in paths
    [row] = read_csv(repo / "data/validated/duplicates.csv")
    assert row["kept"] == "data/raw/cat/3411.jpg"
    assert row["dropped"] == "data/raw/cat/4435.jpg"
    assert (row["labels"], row["action"]) == ("cat", "kept_one")
    assert summary["duplicate_groups"] == 1
    assert summary["dropped_duplicates"] == 1


def test_validate_drops_every_copy_when_duplicate_labels_conflict(
    repo: Path, photo: Callable[[str], bytes]
) -> None:
    _write(repo / "data/raw/dog/cat_really.jpg", photo("Cat/10.jpg"))
    summary = _run()
    paths = {row["path"] for row in read_csv(repo / "data/validated/manifest.csv")}
    assert {"data/raw/cat/10.jpg", "data/raw/dog/cat_really.jpg"}.isdisjoint(paths)
    duplicates = read_csv(repo / "data/validated/duplicates.csv")
    assert {row["action"] for row in duplicates} == {"dropped_conflict"}
    assert {row["dropped"] for row in duplicates} == {
        "data/raw/cat/10.jpg",
        "data/raw/dog/cat_really.jpg",
    }
    assert {row["labels"] for row in duplicates} == {"cat|dog"}
    quarantine = _by_path(read_csv(repo / "data/validated/quarantine.csv"))
    assert quarantine["data/raw/dog/cat_really.jpg"]["reason"] == "label_conflict"
    assert (repo / "data/quarantine/label_conflict/dog/cat_really.jpg").is_file()
    assert summary["label_conflict_files"] == 2


def test_validate_summary_counts_add_up(repo: Path) -> None:
    summary = _run()
    assert (
        summary["total"]
        == summary["valid"] + summary["quarantined"] + summary["dropped_duplicates"]
    )
    assert summary["quarantined"] == len(BAD)
    assert summary["per_class"] == {"cat": 3 + len(CONVERTED) + 1, "dog": 2}
    saved = json.loads((repo / "data/validated/summary.json").read_text())
    assert saved == summary


def test_validate_survives_an_unexpected_decoder_exception(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_decode = validate_module.decode_image

    def explode_on_one(data: bytes, limits: ImageLimits | None = None) -> Any:
        if data == (repo / "data/raw/dog/10.jpg").read_bytes():
            raise RuntimeError("boom")
        return real_decode(data, limits)

    monkeypatch.setattr(validate_module, "decode_image", explode_on_one)
    _run()  # few files: runs in-process, so the patch applies
    row = _by_path(read_csv(repo / "data/validated/quarantine.csv"))["data/raw/dog/10.jpg"]
    assert (row["reason"], row["detail"]) == ("undecodable", "RuntimeError: boom")


def test_validate_rebuilds_its_outputs_from_scratch(repo: Path) -> None:
    stale = repo / "data/quarantine/empty/cat/gone.jpg"
    _write(stale, b"")
    _write(repo / "data/validated/old.csv", b"x")
    _run()
    assert not stale.exists()
    assert not (repo / "data/validated/old.csv").exists()


def test_validate_without_raw_folder_raises_data_source_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataSourceError, match=r"run `python -m training\.ingest` first"):
        _run()


def test_inspect_all_gives_the_same_results_on_a_process_pool(
    tmp_path: Path, petimages: Path, crafted: dict[str, bytes]
) -> None:
    raw = tmp_path / "raw"
    for number in range(70):
        _write(raw / "dog" / f"{number}.jpg", (petimages / f"Dog/{number}.jpg").read_bytes())
    _write(raw / "cat" / "broken.jpg", crafted["truncated_jpeg"])
    items = list_raw(raw)
    pooled = inspect_all(items, ImageLimits(), workers=2)
    assert pooled == inspect_all(items, ImageLimits(), workers=1)
    assert [r.reason for r in pooled].count("truncated") == 1
