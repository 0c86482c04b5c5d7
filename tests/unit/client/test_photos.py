"""Which files of a folder the client sends: every photo, or the labelled ones."""

from pathlib import Path

from client.photos import find_photos, labelled_photos
from common.labels import cap_per_class


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_find_photos_takes_images_recursively_in_order(tmp_path: Path) -> None:
    _touch(tmp_path, "a.jpg", 'sub/b "quoted".PNG', "notes.txt")
    assert [p.name for p in find_photos(tmp_path)] == ["a.jpg", 'b "quoted".PNG']


def test_a_labelled_folder_is_read_in_order_and_capped(tmp_path: Path) -> None:
    _touch(
        tmp_path, "Cat/b.jpg", "Cat/a.jpg", "Dog/c.jpg", "Dog/.hidden.jpg", "notes.txt", "x/y.jpg"
    )
    photos, unlabelled = labelled_photos(tmp_path)
    assert [(p.path.name, p.label) for p in photos] == [
        ("a.jpg", "cat"),
        ("b.jpg", "cat"),
        ("c.jpg", "dog"),
    ]
    assert [p.name for p in unlabelled] == ["y.jpg"]
    assert [p.path.name for p in cap_per_class(photos, 1)] == ["a.jpg", "c.jpg"]
