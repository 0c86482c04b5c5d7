import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import kagglehub
import pytest

from common.errors import DataSourceError
from common.labels import infer_label
from training import ingest as ingest_module
from training.ingest import ingest, main, resolve_source
from training.params import DataParams


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _report(out: Path) -> dict[str, object]:
    return json.loads((out / "ingest.json").read_text())


@pytest.fixture
def jpeg(photo: Callable[[str], bytes]) -> bytes:
    return photo("Cat/5.jpg")


def test_ingest_copies_class_folders_named_in_any_case_at_any_depth(
    tmp_path: Path, jpeg: bytes
) -> None:
    source = tmp_path / "src"
    for name in ["PetImages/Cat/1.jpg", "PetImages/DOG/2.jpg", "more/cats/3.png", "dogs/4"]:
        _write(source / name, jpeg)
    report = ingest(source, tmp_path / "raw")
    assert _files(tmp_path / "raw") == {
        "cat/1.jpg",
        "cat/3.png",
        "dog/2.jpg",
        "dog/4",
        "ingest.json",
    }
    assert (tmp_path / "raw/cat/1.jpg").read_bytes() == jpeg
    assert report.counts == {"cat": 2, "dog": 2}
    assert _report(tmp_path / "raw")["counts"] == {"cat": 2, "dog": 2}


def test_ingest_labels_kaggle_file_names_in_any_case(tmp_path: Path, jpeg: bytes) -> None:
    source = tmp_path / "train"
    for name in ["cat.12.jpg", "Cat.13.JPG", "dog.5.jpg", "DOG.6.jpeg"]:
        _write(source / name, jpeg)
    ingest(source, tmp_path / "raw")
    assert _files(tmp_path / "raw") - {"ingest.json"} == {
        "cat/cat.12.jpg",
        "cat/Cat.13.JPG",
        "dog/dog.5.jpg",
        "dog/DOG.6.jpeg",
    }


def test_ingest_copies_a_text_file_renamed_jpg_so_validation_can_reject_it(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "src/Cat/notes.jpg", b"just text")
    ingest(tmp_path / "src", tmp_path / "raw")
    assert (tmp_path / "raw/cat/notes.jpg").read_bytes() == b"just text"


def test_ingest_reports_unlabelled_and_non_image_files_and_ignores_hidden_ones(
    tmp_path: Path, jpeg: bytes
) -> None:
    source = tmp_path / "src"
    _write(source / "Cat/1.jpg", jpeg)
    _write(source / "Cat/.DS_Store", b"mac")
    _write(source / ".git/Cat/2.jpg", jpeg)
    _write(source / "Cat/Thumbs.db", b"win")
    _write(source / "readme.txt", b"hello")
    _write(source / "birds/7.jpg", jpeg)
    _write(source / "Dog/cat.9.jpg", jpeg)  # the folder says dog, the name says cat
    (source / "Dog/empty_folder").mkdir(parents=True)
    ingest(source, tmp_path / "raw")
    report = _report(tmp_path / "raw")
    assert _files(tmp_path / "raw") == {"cat/1.jpg", "ingest.json"}
    assert report["skipped"] == [
        {"path": "Cat/Thumbs.db", "reason": "not_an_image_file"},
        {"path": "Dog/cat.9.jpg", "reason": "conflicting_labels"},
        {"path": "birds/7.jpg", "reason": "no_label"},
        {"path": "readme.txt", "reason": "not_an_image_file"},
    ]
    assert report["hidden_ignored"] == 1


def test_ingest_prefixes_names_that_collide_within_a_class(tmp_path: Path, jpeg: bytes) -> None:
    source = tmp_path / "src"
    _write(source / "a/Cat/1.jpg", jpeg)
    _write(source / "b/cats/1.JPG", jpeg)
    _write(source / "b/cats/2.jpg", jpeg)
    _write(source / "Dog/1.jpg", jpeg)
    ingest(source, tmp_path / "raw")
    assert _files(tmp_path / "raw") - {"ingest.json"} == {
        "cat/a__Cat__1.jpg",
        "cat/b__cats__1.JPG",
        "cat/2.jpg",
        "dog/1.jpg",
    }


def test_ingest_caps_each_class_in_sorted_order(tmp_path: Path, jpeg: bytes) -> None:
    source = tmp_path / "src"
    for number in [3, 1, 2]:
        _write(source / f"Cat/{number}.jpg", jpeg)
        _write(source / f"Dog/{number}.jpg", jpeg)
    report = ingest(source, tmp_path / "raw", max_per_class=2)
    assert _files(tmp_path / "raw") - {"ingest.json"} == {
        "cat/1.jpg",
        "cat/2.jpg",
        "dog/1.jpg",
        "dog/2.jpg",
    }
    assert (report.counts, report.available) == ({"cat": 2, "dog": 2}, {"cat": 3, "dog": 3})


def test_ingest_rebuilds_the_output_folder_from_scratch(tmp_path: Path, jpeg: bytes) -> None:
    _write(tmp_path / "raw/cat/stale.jpg", jpeg)
    _write(tmp_path / "src/Cat/1.jpg", jpeg)
    ingest(tmp_path / "src", tmp_path / "raw")
    assert _files(tmp_path / "raw") == {"cat/1.jpg", "ingest.json"}


def test_ingest_of_a_missing_folder_raises_data_source_error_and_keeps_old_output(
    tmp_path: Path, jpeg: bytes
) -> None:
    _write(tmp_path / "raw/cat/previous.jpg", jpeg)
    with pytest.raises(DataSourceError, match=r"does not exist.*make up DATA="):
        ingest(tmp_path / "nowhere", tmp_path / "raw")
    assert (tmp_path / "raw/cat/previous.jpg").exists()


def test_ingest_of_a_folder_without_labelled_images_raises_data_source_error(
    tmp_path: Path, jpeg: bytes
) -> None:
    _write(tmp_path / "src/pictures/1.jpg", jpeg)
    with pytest.raises(DataSourceError, match=r"no labelled images found .*1 files without"):
        ingest(tmp_path / "src", tmp_path / "raw")


def test_ingest_refuses_a_source_inside_the_output_folder(tmp_path: Path, jpeg: bytes) -> None:
    _write(tmp_path / "raw/Cat/1.jpg", jpeg)
    with pytest.raises(DataSourceError, match="every ingest run deletes"):
        ingest(tmp_path / "raw", tmp_path / "raw")


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("PetImages/Cat/1.jpg", "cat"),
        ("x/DOGS/y/1.jpg", "dog"),
        ("cats/dogs/1.jpg", "dog"),  # the nearest class folder wins
        ("train/dog.5.jpg", "dog"),
        ("Cat/cat.5.jpg", "cat"),
        ("Cat/dog.5.jpg", None),  # folder and name disagree
        ("catalogue/1.jpg", None),
        ("category.jpg", None),
    ],
)
def test_infer_label(path: str, label: str | None) -> None:
    assert infer_label(PurePosixPath(path)) == label


def test_kaggle_source_offline_raises_data_source_error_saying_how_to_use_a_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def offline(handle: str, **_: object) -> str:
        raise ConnectionError("Failed to resolve 'www.kaggle.com'")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    with pytest.raises(DataSourceError) as caught:
        resolve_source(DataParams(source="kaggle", kaggle_handle="owner/set"))
    message = caught.value.message
    assert "could not download the Kaggle dataset 'owner/set'" in message
    assert "ConnectionError: Failed to resolve 'www.kaggle.com'" in message
    assert "make up DATA=/path/to/folder" in message
    assert "dvc exp run -S data.source=/path/to/folder" in message


def test_resolve_source_returns_a_local_path_relative_to_the_working_directory() -> None:
    assert resolve_source(DataParams(source="photos/pets")) == Path("photos/pets")


def test_main_exits_2_with_the_message_and_no_traceback_on_a_missing_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ingest_module, "configure_logging", lambda *args: None)
    (tmp_path / "params.yaml").write_text("data:\n  source: no/such/folder\n")
    assert main() == 2
    err = capsys.readouterr().err
    assert "ingest failed: the data folder no/such/folder does not exist" in err
    assert "Traceback" not in err
