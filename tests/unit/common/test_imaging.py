"""common.imaging.decode_image: the one gate every training and serving image goes through."""

import contextlib
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, features

from common import imaging
from common.errors import (
    CatDogError,
    DecompressionBombError,
    ImageTooLargeError,
    InvalidImageError,
    UnsupportedMediaTypeError,
)
from common.imaging import ImageLimits, check_header, decode_image, decoded_bytes
from tests.conftest import PETIMAGES
from tests.images import encode, jpeg_declaring, png_16_bit, png_declaring

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
    limits = ImageLimits(max_pixels=150_000_000, max_decoded_bytes=600_000_000)
    assert reason_of(png_declaring(10_000, 10_000), limits) == "truncated"


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


def test_a_7000x7000_16_bit_rgb_png_is_refused_from_its_header_for_its_decoded_bytes() -> None:
    # 49 MP is under max_pixels, but 6 bytes a pixel is 294 MB decoded: over 200 MB.
    data = png_16_bit(7000, 7000)
    assert len(data) < 400_000  # small on the wire
    with pytest.raises(DecompressionBombError, match="6 bytes") as caught:
        check_header(data)  # no pixel is decoded to find this out
    assert caught.value.reason == "decompression_bomb"


@pytest.mark.parametrize(
    ("image", "fmt", "expected"),
    [
        (Image.new("L", (40, 40)), "PNG", 1),
        (Image.new("P", (40, 40)), "GIF", 1),
        (Image.new("RGB", (40, 40)), "JPEG", 4),  # Pillow stores RGB in 4 bytes a pixel
        (Image.new("RGBA", (40, 40)), "PNG", 4),
        (Image.new("CMYK", (40, 40)), "JPEG", 4),
        (Image.fromarray(np.zeros((40, 40), dtype=np.uint16)), "PNG", 2),
    ],
    ids=["L", "P", "RGB", "RGBA", "CMYK", "I;16"],
)
def test_decoded_bytes_count_the_real_bytes_of_each_mode(
    image: Image.Image, fmt: str, expected: int
) -> None:
    assert decoded_bytes(Image.open(io.BytesIO(encode(image, fmt)))) == 40 * 40 * expected


def test_decoded_bytes_count_16_bit_rgb_at_6_bytes_though_pillow_opens_it_as_rgb() -> None:
    opened = Image.open(io.BytesIO(png_16_bit(50, 40)))
    assert opened.mode == "RGB"
    assert decoded_bytes(opened) == 50 * 40 * 6


def test_the_decoded_byte_limit_refuses_16_bit_grayscale_that_8_bit_would_pass() -> None:
    limits = ImageLimits(max_decoded_bytes=3_000)
    gray_8 = encode(Image.new("L", (50, 50), 128), "PNG")  # 2,500 bytes decoded
    assert decode_image(gray_8, limits).image.size == (50, 50)
    assert reason_of(png_16_bit(50, 50, color=False), limits) == "decompression_bomb"  # 5,000


def test_the_default_limits_still_decode_an_8_bit_photo_of_max_pixels() -> None:
    assert decoded_bytes(Image.open(io.BytesIO(png_declaring(7071, 7071)))) <= (
        ImageLimits().max_decoded_bytes
    )


def test_a_jpeg_declaring_65000x65000_is_a_decompression_bomb(jpeg: bytes) -> None:
    assert reason_of(jpeg_declaring(jpeg, 65_000, 65_000)) == "decompression_bomb"


def test_concurrent_decodes_in_one_process_never_hold_more_than_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each 200x200 grayscale decode costs 40,000 + 160,000 bytes (its RGB copy): a budget of
    # 450,000 lets two run at once, never three.
    limits = ImageLimits(decode_budget_bytes=450_000)
    data = encode(Image.new("L", (200, 200), 90), "PNG")
    seen: list[int] = []
    lock = threading.Lock()
    real_to_rgb = imaging.to_rgb

    def watched(image: Image.Image) -> Image.Image:
        with lock:
            seen.append(imaging._BUDGET.held)
        return real_to_rgb(image)

    monkeypatch.setattr(imaging, "to_rgb", watched)
    with ThreadPoolExecutor(8) as pool:
        decoded = list(pool.map(lambda _: decode_image(data, limits), range(32)))
    assert all(d.image.size == (200, 200) for d in decoded)
    assert len(seen) == 32 and max(seen) <= 450_000
    assert imaging._BUDGET.held == 0  # every hold was given back


def test_a_decode_larger_than_the_whole_budget_still_runs_alone(jpeg: bytes) -> None:
    assert decode_image(jpeg, ImageLimits(decode_budget_bytes=1)).image.size == (180, 180)


@pytest.mark.parametrize(
    "data",
    [
        b"\x7fELF\x02\x01\x01\0" + b"\0" * 100,
        b"<!DOCTYPE html><html><body>hi</body></html>",
        b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 100,
    ],
    ids=["elf", "html", "heic"],
)
def test_decode_image_names_executables_html_and_heic_as_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        decode_image(data)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF support")
def test_decode_image_decodes_avif_where_pillow_supports_it(picture: Image.Image) -> None:
    decoded = decode_image(encode(picture, "AVIF"))
    assert (decoded.format, decoded.image.mode, decoded.image.size) == ("AVIF", "RGB", (180, 180))
