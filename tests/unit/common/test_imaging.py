"""common.imaging.decode_image: the one gate every training and serving image goes through."""

import contextlib
import io

import numpy as np
import pytest
from PIL import Image

from common.errors import (
    CatDogError,
    DecompressionBombError,
    ImageTooLargeError,
    InvalidImageError,
    UnsupportedMediaTypeError,
)
from common.imaging import ImageLimits, decode_image
from tests.conftest import PETIMAGES
from tests.images import encode, png_declaring

PHOTO = PETIMAGES / "Cat" / "1.jpg"


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    if not PHOTO.is_file():
        pytest.skip(f"shared test photo not found at {PHOTO}")
    return PHOTO.read_bytes()


@pytest.fixture(scope="module")
def picture(jpeg: bytes) -> Image.Image:
    return Image.open(io.BytesIO(jpeg)).convert("RGB")


def reason_of(data: bytes, limits: ImageLimits | None = None) -> str:
    with pytest.raises(CatDogError) as caught:
        decode_image(data, limits)
    return caught.value.reason


def test_decode_image_turns_a_real_jpeg_into_rgb(jpeg: bytes) -> None:
    decoded = decode_image(jpeg)
    assert (decoded.format, decoded.original_mode, decoded.image.mode) == ("JPEG", "RGB", "RGB")
    assert decoded.image.size == (decoded.width, decoded.height) == (180, 180)


def test_decode_image_rejects_zero_bytes_with_reason_empty() -> None:
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"")
    assert reason_of(b"") == "empty"


def test_decode_image_rejects_truncated_jpeg_with_reason_truncated(jpeg: bytes) -> None:
    assert reason_of(jpeg[: len(jpeg) // 2]) == "truncated"


def test_decode_image_rejects_jpeg_cut_inside_its_header_with_reason_truncated(jpeg: bytes) -> None:
    # Pillow raises a bare OSError from Image.open here, not from load().
    assert reason_of(jpeg[:200]) == "truncated"


def test_decode_image_rejects_text_renamed_jpg_with_reason_not_an_image() -> None:
    assert reason_of(b"definitely not a photo\n" * 10) == "not_an_image"


def test_decode_image_rejects_random_bytes_with_reason_not_an_image() -> None:
    assert reason_of(np.random.default_rng(0).bytes(4096)) == "not_an_image"


def test_decode_image_rejects_10x10_image_with_reason_too_small(picture: Image.Image) -> None:
    assert reason_of(encode(picture.resize((10, 10)), "PNG")) == "too_small"


def test_decode_image_rejects_50000x50000_png_header_as_decompression_bomb() -> None:
    with pytest.raises(DecompressionBombError) as caught:
        decode_image(png_declaring(50_000, 50_000))
    assert caught.value.reason == "decompression_bomb"


def test_decode_image_rejects_header_above_max_pixels_as_decompression_bomb() -> None:
    assert reason_of(png_declaring(8_000, 8_000)) == "decompression_bomb"  # 64 MP > 50 MP


def test_decode_image_lets_configured_max_pixels_override_pillows_warning_threshold() -> None:
    # 100 MP is over Pillow's 89 MP warning but under a configured 150 MP limit: the header
    # passes, and the 1x1 pixel data then fails to decode as what it is, truncated.
    assert reason_of(png_declaring(10_000, 10_000), ImageLimits(max_pixels=150_000_000)) == (
        "truncated"
    )


def test_decode_image_rejects_file_over_max_bytes_with_reason_too_large(jpeg: bytes) -> None:
    with pytest.raises(ImageTooLargeError):
        decode_image(jpeg, ImageLimits(max_bytes=len(jpeg) - 1))


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        b"PK\x03\x04zip",
    ],
    ids=["pdf", "svg", "zip"],
)
def test_decode_image_rejects_other_media_with_reason_unsupported_media_type(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        decode_image(data)


def test_decode_image_rejects_an_image_format_outside_the_accepted_list(
    picture: Image.Image,
) -> None:
    assert reason_of(encode(picture, "ICO")) == "unsupported_media_type"


def test_decode_image_reports_a_broken_gif_as_invalid_not_unsupported(picture: Image.Image) -> None:
    assert reason_of(encode(picture, "GIF")[:30]) == "not_an_image"


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("CMYK", "JPEG"), ("L", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("1", "PNG")],
)
def test_decode_image_converts_each_mode_to_rgb_and_records_the_original(
    picture: Image.Image, mode: str, fmt: str
) -> None:
    decoded = decode_image(encode(picture.convert(mode), fmt))
    assert (decoded.original_mode, decoded.format, decoded.image.mode) == (mode, fmt, "RGB")
    assert decoded.image.size == (180, 180)


def test_decode_image_flattens_transparency_onto_white() -> None:
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    decoded = decode_image(encode(rgba, "PNG"))
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.image.getpixel((1, 1)) == (255, 0, 0)


def test_decode_image_scales_16_bit_grayscale_down_to_8_bits() -> None:
    values = np.zeros((40, 64), dtype=np.uint16)
    values[:, 32:] = 65535
    values[0, 0] = 32768
    decoded = decode_image(encode(Image.fromarray(values), "PNG"))
    assert decoded.original_mode == "I;16"
    pixels = np.asarray(decoded.image)  # (H, W, 3)
    assert pixels.shape == (40, 64, 3)
    assert pixels[1, 1].tolist() == [0, 0, 0]
    assert pixels[1, 40].tolist() == [255, 255, 255]
    assert pixels[0, 0].tolist() == [128, 128, 128]


def test_decode_image_applies_exif_orientation_6_so_width_and_height_swap(
    picture: Image.Image,
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(picture.resize((120, 80)), "JPEG", exif=exif.tobytes()))
    assert (decoded.width, decoded.height) == (80, 120)
    assert decoded.image.size == (80, 120)


def test_decode_image_names_the_real_format_whatever_the_bytes_claim_to_be(
    picture: Image.Image,
) -> None:
    assert decode_image(encode(picture, "WEBP")).format == "WEBP"


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt metadata
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_decode_image_raises_only_domain_errors_on_cut_or_corrupted_files(
    picture: Image.Image, fmt: str
) -> None:
    data = encode(picture.resize((48, 48)), fmt)
    rng = np.random.default_rng(1)
    cases = [data[:n] for n in range(1, len(data), max(1, len(data) // 60))]
    for _ in range(60):
        corrupt = bytearray(data)
        for at in rng.integers(0, len(data), size=8):
            corrupt[at] = int(rng.integers(0, 256))
        cases.append(bytes(corrupt))
    for case in cases:
        with contextlib.suppress(CatDogError):  # any other exception fails the test
            decode_image(case, ImageLimits(min_side=1))
