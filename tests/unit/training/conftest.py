"""Fixtures for the data-stage tests: real photos from the shared folder, and broken or
unusual files made from them in tmp_path. Nothing is written outside tmp_path."""

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from common.labels import CLASSES
from tests.conftest import PETIMAGES
from tests.images import encode, png_declaring
from training.dataset import Sample

# A byte-identical pair documented in the shared data README.
DUPLICATE_PAIR = ("Cat/3411.jpg", "Cat/4435.jpg")


@pytest.fixture(scope="session")
def petimages() -> Path:
    if not PETIMAGES.is_dir():
        pytest.skip(f"shared test photos not found at {PETIMAGES}")
    return PETIMAGES


@pytest.fixture(scope="module")
def two_threads() -> Iterator[None]:
    # The suite shares a 2-core machine; restore whatever the process had.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def labelled_samples(petimages: Path) -> Callable[[range], list[Sample]]:
    """Training samples of both classes: the petimages photos numbered `numbers`."""
    return lambda numbers: [
        Sample(petimages / label.capitalize() / f"{n}.jpg", index, "")
        for index, label in enumerate(CLASSES)
        for n in numbers
    ]


@pytest.fixture(scope="session")
def photo(petimages: Path) -> Callable[[str], bytes]:
    """Bytes of a real photo, e.g. photo("Cat/12.jpg")."""
    return lambda name: (petimages / name).read_bytes()


@pytest.fixture(scope="session")
def crafted(photo: Callable[[str], bytes]) -> dict[str, bytes]:
    """Broken and unusual files, all derived from one real cat photo."""
    jpeg = photo("Cat/1.jpg")
    base = Image.open(io.BytesIO(jpeg)).convert("RGB")
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return {
        "zero_bytes": b"",
        "truncated_jpeg": jpeg[: len(jpeg) // 2],
        "text_renamed_jpg": b"this is a text file, not a photo\n" * 20,
        "random_bytes": bytes((i * 7919 + 13) % 251 for i in range(4096)),
        "tiny_10x10": encode(base.resize((10, 10)), "JPEG"),
        "bomb_50000x50000": png_declaring(50_000, 50_000),
        "pdf_magic": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        "cmyk_jpeg": encode(base.convert("CMYK"), "JPEG"),
        "grayscale_jpeg": encode(base.convert("L"), "JPEG"),
        "palette_png": encode(base.convert("P"), "PNG"),
        "rgba_png": encode(rgba, "PNG"),
        "gray16_png": encode(Image.new("I;16", (64, 48), 40_000), "PNG"),
        "exif_rotated_jpeg": encode(base.resize((120, 80)), "JPEG", exif=exif.tobytes()),
    }
