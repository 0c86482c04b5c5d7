"""Builders for the odd and broken image files several test modules need."""

import io
import shutil
import struct
import zlib
from pathlib import Path

from PIL import Image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """`image` saved in `fmt` (JPEG, PNG, ...) as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR is patched to claim `width`x`height` (CRC fixed): a decompression
    bomb that allocates nothing until someone decodes it."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    at = data.index(b"IHDR")
    data[at + 4 : at + 12] = struct.pack(">II", width, height)
    data[at + 17 : at + 21] = struct.pack(">I", zlib.crc32(bytes(data[at : at + 17])))
    return bytes(data)


# Real photos for deploy/smoke-test.sh. The repository holds no copy of ../shared/data, so
# tests hand the script copies of these through SMOKE_PHOTOS_DIR.
SMOKE_SOURCES = {
    "cat.jpg": ("petimages-180", "Cat", "1.jpg"),
    "dog.jpg": ("petimages-180", "Dog", "4.jpg"),
}


def smoke_photos(dest: Path) -> Path:
    """`dest` holding cat.jpg and dog.jpg copied from ../shared/data; returns `dest`."""
    from tests.conftest import SHARED_DATA

    dest.mkdir(parents=True, exist_ok=True)
    for name, parts in SMOKE_SOURCES.items():
        shutil.copyfile(SHARED_DATA.joinpath(*parts), dest / name)
    return dest


def petimage(label: str, number: int) -> Image.Image:
    """A petimages-180 photo decoded as serving decodes it, e.g. petimage("cat", 12)."""
    from common.imaging import decode_image
    from tests.conftest import PETIMAGES

    return decode_image((PETIMAGES / label.capitalize() / f"{number}.jpg").read_bytes()).image
