"""Turning untrusted bytes into a clean RGB picture, or a precise reason why not.

One function serves training-time validation (which quarantines what it rejects) and the
serving path (which maps the same errors to HTTP statuses), so a photo the service refuses
is exactly a photo training would have quarantined. Pillow only: the gateway uses this too.
"""

import io
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError, features

from common.errors import (
    DecompressionBombError,
    ImageTooLargeError,
    InvalidImageError,
    UnsupportedMediaTypeError,
)

# A truncated JPEG must fail, not be silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# AVIF only where this Pillow was built with libavif (the 13.x wheels are).
ACCEPTED_FORMATS = frozenset(
    {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"}
    | ({"AVIF"} if features.check("avif") else set())
)

# Magic numbers of files that are clearly something else than a photo we accept.
_OTHER_MEDIA_MAGIC: dict[bytes, str] = {
    b"%PDF": "application/pdf",
    b"PK\x03\x04": "application/zip",
    b"\x1f\x8b": "application/gzip",
    b"\x7fELF": "an executable (ELF)",
    b"<svg": "image/svg+xml",
    b"<?xml": "application/xml",
    b"<!doctype html": "text/html",
    b"<html": "text/html",
}
# ISO base media files (`....ftyp<brand>`) whose brand says HEIF/HEIC or AVIF.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}

# Bytes one pixel takes once decoded, by Pillow mode. Pillow stores every multi-band
# 8-bit mode (RGB, YCbCr, LA, CMYK, ...) in 4 bytes a pixel; the rest are listed.
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_STORED_BYTES = 4

# What Pillow raises on corrupt data, in the header as well as in the pixels.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be. These defaults are the project's one statement of the limits:
    the serving settings start from them, and a test holds `params.yaml`'s validate stage to
    them, so training quarantines exactly what serving refuses."""

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 50_000_000
    min_side: int = 32
    # What one image may take decoded, counted in its real bytes a pixel (`decoded_bytes`):
    # 50 MP at 4 bytes, so every 8-bit photo within `max_pixels` fits and only deeper ones
    # (16-bit RGB: 6 bytes a pixel) are refused for their size in memory.
    max_decoded_bytes: int = 200_000_000
    # What all the decodes running at once in one process may hold (`decode_cost`); a
    # decode that would pass it waits for the others to finish.
    decode_budget_bytes: int = 600_000_000

    @classmethod
    def from_settings(cls, settings: Any) -> "ImageLimits":
        return cls(
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            min_side=settings.min_image_side,
            max_decoded_bytes=settings.max_image_decoded_bytes,
            decode_budget_bytes=settings.image_decode_budget_bytes,
        )


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied
    format: str  # what the file really is, whatever its name says
    original_mode: str
    width: int
    height: int


def check_header(data: bytes, limits: ImageLimits | None = None) -> Image.Image:
    """Every check that needs no pixels: size on the wire, what the file really is, its
    declared dimensions. Cheap (no pixel is decoded), so the gateway refuses most bad
    uploads before they reach a worker; returns the opened, not yet decoded, image."""
    limits = limits or ImageLimits()
    if len(data) == 0:
        raise InvalidImageError("the file is empty (0 bytes)", reason="empty")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            f"the file is {len(data)} bytes; the limit is {limits.max_bytes} bytes"
        )
    image = _open_header(data)
    _check_dimensions(image, limits)
    return image


def decode_image(data: bytes, limits: ImageLimits | None = None) -> DecodedImage:
    """Fully decode `data` into an upright RGB image, or raise a domain error that says why.

    Holds `decode_cost` of the process's decode budget while it decodes, so concurrent
    decodes (a threaded worker's task threads) never hold more than the budget at once."""
    limits = limits or ImageLimits()
    image = check_header(data, limits)
    with _BUDGET.hold(decode_cost(image), limits.decode_budget_bytes):
        _load_fully(image)
        original_mode = image.mode
        rgb = to_rgb(_upright(image))
    return DecodedImage(rgb, image.format or "unknown", original_mode, rgb.width, rgb.height)


def bytes_per_pixel(image: Image.Image) -> int:
    """The real size of one pixel: what Pillow stores for the mode, or what the file's samples
    take when they are deeper (a 16-bit RGB PNG opens as mode RGB but carries 6 bytes)."""
    stored = _MODE_BYTES.get(image.mode, _STORED_BYTES)
    tile = getattr(image, "tile", None)  # an opened file's decoder plan: (codec, ..., args)
    rawmode = tile[0].args if tile else None
    if isinstance(rawmode, tuple):
        rawmode = rawmode[0] if rawmode else None
    sample_bytes = 2 if isinstance(rawmode, str) and ";16" in rawmode else 1
    return max(stored, sample_bytes * len(image.getbands()))


def decoded_bytes(image: Image.Image) -> int:
    """What the opened (not yet decoded) `image` will take once decoded."""
    width, height = image.size
    return width * height * bytes_per_pixel(image)


def decode_cost(image: Image.Image) -> int:
    """The memory a decode holds at its peak: the decoded pixels, and the RGB copy
    `to_rgb` makes of any other mode."""
    width, height = image.size
    copy = 0 if image.mode == "RGB" else width * height * _STORED_BYTES
    return decoded_bytes(image) + copy


class _ByteBudget:
    """A counting semaphore in bytes, shared by the threads of one process."""

    def __init__(self) -> None:
        self._held = 0
        self._changed = threading.Condition()

    @property
    def held(self) -> int:
        return self._held

    @contextmanager
    def hold(self, nbytes: int, capacity: int) -> Iterator[None]:
        nbytes = min(nbytes, capacity)  # one decode larger than the budget runs alone
        with self._changed:
            self._changed.wait_for(lambda: self._held + nbytes <= capacity)
            self._held += nbytes
        try:
            yield
        finally:
            with self._changed:
                self._held -= nbytes
                self._changed.notify_all()


_BUDGET = _ByteBudget()


def _open_header(data: bytes) -> Image.Image:
    # Image.open reads only the header: no pixel is allocated yet. Pillow's own warning
    # threshold (~89 MP) is ignored so that `limits.max_pixels` decides; its hard error
    # (~179 MP) still stops a bomb before anything is allocated.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise DecompressionBombError(f"the image declares too many pixels ({exc})") from exc
    except UnidentifiedImageError as exc:
        media_type = other_media_type(data)
        if media_type is not None:
            raise UnsupportedMediaTypeError(
                f"the file is {media_type}, not a supported image"
            ) from exc
        raise InvalidImageError(
            "the file is not an image Pillow can identify", reason="not_an_image"
        ) from exc
    except _DECODE_ERRORS as exc:  # a known format whose header is cut short or corrupt
        raise _decode_failure(exc) from exc
    if image.format not in ACCEPTED_FORMATS:
        raise UnsupportedMediaTypeError(
            f"image format {image.format} is not supported; send JPEG, PNG, WEBP, BMP, GIF or TIFF"
        )
    return image


def other_media_type(data: bytes) -> str | None:
    """What a file Pillow cannot open is, when its first bytes say so clearly."""
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIF_BRANDS:
            return "image/heic (HEIF)"
        if brand in _AVIF_BRANDS:
            return "image/avif"
    head = data[:64].lstrip().lower()
    for magic, media_type in _OTHER_MEDIA_MAGIC.items():
        if head.startswith(magic.lower()):
            return media_type
    return None


def _check_dimensions(image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if width * height > limits.max_pixels:
        raise DecompressionBombError(
            f"the image declares {width}x{height} pixels; the limit is {limits.max_pixels} pixels"
        )
    nbytes = decoded_bytes(image)
    if nbytes > limits.max_decoded_bytes:
        raise DecompressionBombError(
            f"the image declares {width}x{height} pixels of {bytes_per_pixel(image)} bytes"
            f" ({image.mode}), {nbytes} bytes decoded; the limit is"
            f" {limits.max_decoded_bytes} bytes"
        )
    if min(width, height) < limits.min_side:
        raise InvalidImageError(
            f"the image is {width}x{height}; both sides must be at least {limits.min_side} pixels",
            reason="too_small",
        )


def _load_fully(image: Image.Image) -> None:
    try:
        image.load()
    except _DECODE_ERRORS as exc:
        raise _decode_failure(exc) from exc


def _decode_failure(exc: Exception) -> InvalidImageError:
    reason = "truncated" if "truncated" in str(exc).lower() else "undecodable"
    return InvalidImageError(f"the image could not be decoded: {exc}", reason=reason)


def _upright(image: Image.Image) -> Image.Image:
    """Rotated as its EXIF orientation says, in place (a 7000 x 7000 photo is not copied).
    A broken EXIF block must not cost us an otherwise fine photo, but only EXIF's own
    errors are caught: a broad `except Exception` would also swallow the worker's
    soft-time-limit signal, which is raised wherever the decode happens to be."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except (*_DECODE_ERRORS, KeyError, ZeroDivisionError):
        pass
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB whatever the source mode: alpha is flattened onto white, CMYK and palettes converted."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # Scaled in its own 2-byte mode: through "F" the copies took 8 bytes a pixel more.
        image = image.point(lambda v: v / 256).convert("L")
    elif image.mode in ("I", "F"):
        image = image.convert("F").point(lambda v: v / 256.0).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
