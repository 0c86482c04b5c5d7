"""Turning untrusted bytes into a clean RGB picture, or a precise reason why not.

One function serves training-time validation (which quarantines what it rejects) and the
serving path (which maps the same errors to HTTP statuses), so a photo the service refuses
is exactly a photo training would have quarantined. Pillow only: the gateway uses this too.
"""

import io
import struct
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from common.errors import (
    DecompressionBombError,
    ImageTooLargeError,
    InvalidImageError,
    UnsupportedMediaTypeError,
)

# A truncated JPEG must fail, not be silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})

# Magic numbers of files that are clearly something else than a photo we accept.
_OTHER_MEDIA_MAGIC: dict[bytes, str] = {
    b"%PDF": "application/pdf",
    b"PK\x03\x04": "application/zip",
    b"\x1f\x8b": "application/gzip",
    b"<svg": "image/svg+xml",
    b"<?xml": "application/xml",
}

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

    @classmethod
    def from_settings(cls, settings: Any) -> "ImageLimits":
        return cls(
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            min_side=settings.min_image_side,
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
    """Fully decode `data` into an upright RGB image, or raise a domain error that says why."""
    image = check_header(data, limits)
    _load_fully(image)
    original_mode = image.mode
    rgb = to_rgb(_upright(image))
    return DecodedImage(rgb, image.format or "unknown", original_mode, rgb.width, rgb.height)


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
        head = data[:8].lstrip()
        for magic, media_type in _OTHER_MEDIA_MAGIC.items():
            if head.startswith(magic):
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


def _check_dimensions(image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if width * height > limits.max_pixels:
        raise DecompressionBombError(
            f"the image declares {width}x{height} pixels; the limit is {limits.max_pixels} pixels"
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
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:  # a broken EXIF block must not cost us an otherwise fine photo
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB whatever the source mode: alpha is flattened onto white, CMYK and palettes converted."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        image = image.convert("F").point(lambda v: v / 256.0).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
