"""Every bad input gets its 4xx, never a 5xx, through the real server."""

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.images import png_declaring

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MB = 1024 * 1024


@pytest.fixture(scope="module")
def jpeg(photo_dir: Path) -> bytes:
    return sorted((photo_dir / "kaggle").glob("*.jpg"))[0].read_bytes()


def _assert_error(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason
    assert isinstance(body["detail"], str) and body["detail"]


def _cmyk_tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("CMYK", (64, 64)).save(buffer, "TIFF")
    return buffer.getvalue()


BAD_FILES: list[tuple[str, Any, int, str]] = [
    ("zero-byte", lambda jpeg: b"", 422, "empty"),
    ("truncated", lambda jpeg: jpeg[: len(jpeg) // 2], 422, "truncated"),
    ("text renamed .jpg", lambda jpeg: b"just text, no pixels\n" * 20, 422, "not_an_image"),
    ("corrupt header", lambda jpeg: jpeg[:2] + b"\0" * 200, 422, "not_an_image"),
    ("too small", lambda jpeg: _tiny_png(), 422, "too_small"),
    ("50000x50000 png bomb", lambda jpeg: png_declaring(50_000, 50_000), 422, "decompression_bomb"),
    (
        "8000x8000 png over max pixels",
        lambda jpeg: png_declaring(8000, 8000),
        422,
        "decompression_bomb",
    ),
    ("pdf", lambda jpeg: b"%PDF-1.7\n%" + b"x" * 300, 415, "unsupported_media_type"),
    (
        "svg",
        lambda jpeg: b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
        415,
        "unsupported_media_type",
    ),
    ("over 10 MB", lambda jpeg: jpeg + b"\0" * (10 * MB), 413, "too_large"),
]


def _tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("case", "make", "status", "reason"), BAD_FILES, ids=[c[0] for c in BAD_FILES]
)
def test_predict_refuses_bad_file_with_its_status(
    client: httpx.Client, jpeg: bytes, case: str, make: Any, status: int, reason: str
) -> None:
    response = client.post("/predict", files={"file": ("photo.jpg", make(jpeg), "image/jpeg")})
    _assert_error(response, status, reason)


def test_predict_accepts_a_cmyk_tiff(client: httpx.Client) -> None:
    response = client.post("/predict", files={"file": ("scan.tiff", _cmyk_tiff(), "image/tiff")})
    assert response.status_code == 200, response.text


def test_predict_refuses_an_oversized_upload_sent_without_content_length(
    client: httpx.Client,
) -> None:
    def body() -> Any:
        yield b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        for _ in range(120):  # 12 MB, streamed chunk by chunk
            yield b"\xff" * 100_000
        yield b"\r\n--b0undary--\r\n"

    response = client.post(
        "/predict",
        content=body(),
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    _assert_error(response, 413, "too_large")


def test_predict_refuses_a_wrong_field_name_with_422(client: httpx.Client, jpeg: bytes) -> None:
    response = client.post("/predict", files={"image": ("photo.jpg", jpeg, "image/jpeg")})
    _assert_error(response, 422, "missing_field")


def test_predict_refuses_a_body_that_is_not_multipart_with_422(client: httpx.Client) -> None:
    _assert_error(client.post("/predict", json={"file": "x"}), 422, "missing_field")
    _assert_error(client.post("/predict"), 422, "missing_field")


def test_predict_refuses_a_malformed_multipart_body_with_422(client: httpx.Client) -> None:
    response = client.post(
        "/predict",
        content=b"--zz\r\nno headers at all",
        headers={"Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert response.status_code == 422, response.text


def test_predict_refuses_two_files_with_413(client: httpx.Client, jpeg: bytes) -> None:
    files = [("file", ("a.jpg", jpeg, "image/jpeg")), ("file", ("b.jpg", jpeg, "image/jpeg"))]
    _assert_error(client.post("/predict", files=files), 413, "too_many_files")


def test_jobs_refuse_more_files_than_the_limit_with_413(client: httpx.Client) -> None:
    files = [("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(251)]  # limit: 250
    _assert_error(client.post("/jobs", files=files), 413, "too_many_files")


def test_jobs_refuse_a_request_over_the_total_size_limit_with_413(client: httpx.Client) -> None:
    files = [("files", (f"{i}.jpg", b"\0" * (9 * MB), "image/jpeg")) for i in range(4)]  # 36 MB
    _assert_error(client.post("/jobs", files=files), 413, "request_too_large")


def test_jobs_refuse_a_missing_files_field_with_422(client: httpx.Client, jpeg: bytes) -> None:
    response = client.post("/jobs", files={"file": ("a.jpg", jpeg, "image/jpeg")})
    _assert_error(response, 422, "missing_field")
    _assert_error(client.post("/jobs", data={"callback_url": "http://x"}), 422, "missing_field")


def test_jobs_refuse_a_callback_url_that_is_not_http_with_422(
    client: httpx.Client, jpeg: bytes
) -> None:
    response = client.post(
        "/jobs",
        files={"files": ("a.jpg", jpeg, "image/jpeg")},
        data={"callback_url": "file:///etc/passwd"},
    )
    _assert_error(response, 422, "invalid_field")


def test_unknown_job_is_404_and_a_bad_id_is_422(client: httpx.Client) -> None:
    _assert_error(client.get("/jobs/0123456789abcdef"), 404, "job_not_found")
    _assert_error(client.delete("/jobs/0123456789abcdef"), 404, "job_not_found")
    _assert_error(client.get("/jobs/not$an$id"), 422, "validation_error")


@pytest.mark.parametrize(
    "params", [{"offset": -1}, {"offset": 2**63}, {"offset": "ten"}, {"limit": 0}, {"limit": 10**9}]
)
def test_a_page_outside_its_bounds_is_422_not_a_server_error(
    client: httpx.Client, jpeg: bytes, params: dict[str, object]
) -> None:
    job = client.post("/jobs", files={"files": ("a.jpg", jpeg, "image/jpeg")}).json()
    _assert_error(client.get(f"/jobs/{job['job_id']}", params=params), 422, "validation_error")
