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


def png_16_bit(width: int, height: int, color: bool = True) -> bytes:
    """A `width`x`height` PNG of 16-bit samples (RGB, or grayscale with `color` False), every
    pixel the same mid grey: it compresses to kilobytes whatever its size decoded."""
    color_type, bands = (2, 3) if color else (0, 1)
    row = b"\0" + b"\x80\x00" * bands * width  # filter byte 0, then the samples
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with its frame header (SOF0/SOF2) patched to claim `width`x`height`."""
    data = bytearray(jpeg)
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            data[at + 5 : at + 9] = struct.pack(">HH", height, width)
            return bytes(data)
    raise ValueError("no baseline or progressive frame header in this JPEG")


def with_exif_orientation(image: Image.Image, orientation: int) -> bytes:
    """A JPEG whose pixels are `image` and whose EXIF says to show it turned by `orientation`."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())
