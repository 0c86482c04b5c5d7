"""Every bad input gets its status and stable `reason` through the real server, never a 5xx.

One table (`CASES`) states for each input what it must get: a 4xx with its reason and a
`detail` that is a sentence, or 200 for inputs that are only unusual (grayscale, RGBA, GIF,
WebP, CMYK, AVIF ...), which must be classified. After every test nothing of a refused upload
is left in Redis, and the gateway's and the worker's processes are the ones that started.
"""

import csv
import io
import json
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image, features

from client.output import csv_cell, render, row
from common.store import workers
from common.store.ops import Store
from tests.images import (
    encode,
    jpeg_declaring,
    png_16_bit,
    png_declaring,
    with_exif_orientation,
)
from tests.integration.processes import Stack, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MB = 1024 * 1024
MAX_IMAGE_BYTES = 10 * MB  # the shared stack keeps the default max_image_bytes
BOUNDARY = "b0undary"
# What is left in Redis of an upload (common/store/keys.py): never, once it is refused.
UPLOAD_KEYS = ("catdog:predict:*:img", "catdog:job:*:img:*")


# -- what a case sends ---------------------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    client: httpx.Client
    jpeg: bytes  # a real Kaggle photo
    job_id: str  # a finished job of one photo, for the page cases


@dataclass(frozen=True)
class Case:
    id: str
    send: Callable[[Ctx], httpx.Response]
    status: int
    reason: str | None = None  # None: a 2xx, checked by the status alone (200: classified)


def predict(make: Callable[[bytes], bytes], name: str = "photo.jpg") -> Callable[[Ctx], Any]:
    """POST /predict of `make(jpeg)` as the file `name`, sent as image/jpeg whatever it is."""
    return lambda ctx: ctx.client.post(
        "/predict", files={"file": (name, make(ctx.jpeg), "image/jpeg")}
    )


def raw_post(path: str, body: Callable[[bytes], bytes], content_type: str) -> Any:
    return lambda ctx: ctx.client.post(
        path, content=body(ctx.jpeg), headers={"Content-Type": content_type}
    )


def job(*, files: int = 1, make: Callable[[bytes], bytes] = lambda j: j, **data: str) -> Any:
    return lambda ctx: ctx.client.post(
        "/jobs",
        files=[("files", (f"{i}.jpg", make(ctx.jpeg), "image/jpeg")) for i in range(files)],
        data=data,
    )


def page(**params: object) -> Any:
    return lambda ctx: ctx.client.get(f"/jobs/{ctx.job_id}", params=params)


def multipart(filename: bytes, data: bytes, field: bytes = b"file", preamble: bytes = b"") -> bytes:
    """A multipart body written byte by byte: any file name, any preamble."""
    head = b'Content-Disposition: form-data; name="' + field + b'"; filename="' + filename + b'"'
    return (
        preamble
        + f"--{BOUNDARY}\r\n".encode()
        + head
        + b"\r\nContent-Type: image/jpeg\r\n\r\n"
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


# -- the files -------------------------------------------------------------------------------


def photo(jpeg: bytes) -> Image.Image:
    return Image.open(io.BytesIO(jpeg)).convert("RGB")


def as_mode(mode: str, fmt: str, **options: object) -> Callable[[bytes], bytes]:
    return lambda jpeg: encode(photo(jpeg).convert(mode), fmt, **options)


def animated_gif(jpeg: bytes) -> bytes:
    frames = [photo(jpeg), Image.new("RGB", photo(jpeg).size, (255, 0, 0))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def sixteen_bit_gray(jpeg: bytes) -> bytes:
    values = (np.asarray(photo(jpeg).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return encode(Image.fromarray(values), "PNG")


def zip_of(data: bytes) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", data)
    return buffer.getvalue()


HEIC_HEADER = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 200
ELF_HEADER = b"\x7fELF\x02\x01\x01\0" + b"\0" * 300
WRONG = "unsupported_media_type"

CASES: list[Case] = [
    # Files that are not a usable photo.
    Case("zero bytes", predict(lambda j: b""), 422, "empty"),
    Case("truncated jpeg", predict(lambda j: j[: len(j) // 2]), 422, "truncated"),
    Case("text as .jpg", predict(lambda j: b"just text, no pixels\n" * 20), 422, "not_an_image"),
    Case("corrupt header", predict(lambda j: j[:2] + b"\0" * 200), 422, "not_an_image"),
    Case("html as .jpg", predict(lambda j: b"<!DOCTYPE html><html><p>hi</p></html>"), 415, WRONG),
    Case(
        "svg as .jpg", predict(lambda j: b"<svg xmlns='http://www.w3.org/2000/svg'/>"), 415, WRONG
    ),
    Case("pdf as .jpg", predict(lambda j: b"%PDF-1.7\n%" + b"x" * 300), 415, WRONG),
    Case("zip as .jpg", predict(zip_of), 415, WRONG),
    Case("elf as .jpg", predict(lambda j: ELF_HEADER), 415, WRONG),
    Case("heic", predict(lambda j: HEIC_HEADER, "photo.heic"), 415, WRONG),
    Case("1x1 pixel", predict(lambda j: encode(Image.new("RGB", (1, 1)), "PNG")), 422, "too_small"),
    Case(
        "8x8 pixels", predict(lambda j: encode(Image.new("RGB", (8, 8)), "PNG")), 422, "too_small"
    ),
    # Bombs: refused from their header, before a pixel is decoded.
    Case(
        "png of 400 MP", predict(lambda j: png_declaring(20_000, 20_000)), 422, "decompression_bomb"
    ),
    Case("png of 64 MP", predict(lambda j: png_declaring(8000, 8000)), 422, "decompression_bomb"),
    Case(
        "jpeg of 65000x65000",
        predict(lambda j: jpeg_declaring(j, 65_000, 65_000)),
        422,
        "decompression_bomb",
    ),
    Case(
        "16-bit rgb png of 7000x7000 (294 MB decoded)",
        predict(lambda j: png_16_bit(7000, 7000)),
        422,
        "decompression_bomb",
    ),
    # Sizes.
    Case(
        "one byte over the limit",
        predict(lambda j: j + b"\0" * (MAX_IMAGE_BYTES + 1 - len(j))),
        413,
        "too_large",
    ),
    Case("10 MB over the limit", predict(lambda j: j + b"\0" * (10 * MB)), 413, "too_large"),
    # Unusual but good photos: classified.
    Case("jpeg/zip polyglot (a jpeg that decodes)", predict(lambda j: j + zip_of(b"payload")), 200),
    Case("cmyk jpeg", predict(as_mode("CMYK", "JPEG")), 200),
    Case("cmyk tiff", predict(as_mode("CMYK", "TIFF"), "scan.tiff"), 200),
    Case("16-bit rgb png", predict(lambda j: png_16_bit(64, 64)), 200),
    Case("16-bit grayscale png", predict(sixteen_bit_gray), 200),
    Case("grayscale jpeg", predict(as_mode("L", "JPEG")), 200),
    Case("rgba png", predict(as_mode("RGBA", "PNG")), 200),
    Case("palette gif", predict(as_mode("P", "GIF")), 200),
    Case("animated gif", predict(animated_gif), 200),
    Case("webp", predict(as_mode("RGB", "WEBP")), 200),
    Case(
        "avif",
        predict(
            as_mode("RGB", "AVIF") if features.check("avif") else lambda j: b"\0\0\0\x1cftypavif"
        ),
        200 if features.check("avif") else 415,
        None if features.check("avif") else WRONG,
    ),
    Case(
        "exif orientation 6",
        predict(lambda j: with_exif_orientation(photo(j).rotate(90, expand=True), 6)),
        200,
    ),
    # Bodies that are not one file in field `file`.
    Case(
        "wrong field",
        lambda ctx: ctx.client.post("/predict", files={"image": ("a.jpg", ctx.jpeg)}),
        422,
        "missing_field",
    ),
    Case(
        "two files",
        lambda ctx: ctx.client.post(
            "/predict", files=[("file", ("a.jpg", ctx.jpeg)), ("file", ("b.jpg", ctx.jpeg))]
        ),
        413,
        "too_many_files",
    ),
    Case("no body", lambda ctx: ctx.client.post("/predict"), 422, "missing_field"),
    Case(
        "json body",
        lambda ctx: ctx.client.post("/predict", json={"file": "x"}),
        422,
        "missing_field",
    ),
    Case(
        "multipart without part headers",
        raw_post(
            "/predict", lambda j: b"--zz\r\nno headers at all", "multipart/form-data; boundary=zz"
        ),
        422,
        "malformed_request",
    ),
    Case(
        "multipart with a 1 MB preamble",
        raw_post(
            "/predict",
            lambda j: multipart(b"p.jpg", j, preamble=b"x" * MB + b"\r\n"),
            f"multipart/form-data; boundary={BOUNDARY}",
        ),
        422,
        "malformed_request",  # python-multipart does not skip a preamble
    ),
    Case(
        "X-Request-ID of 10,000 characters",
        lambda ctx: ctx.client.post(
            "/predict", files={"file": ("a.jpg", ctx.jpeg)}, headers={"X-Request-ID": "r" * 10_000}
        ),
        200,
    ),
    # Jobs.
    Case(
        "2,000 tiny files in one job (max_job_files 250)",
        job(files=2000, make=lambda j: b"x"),
        413,
        "too_many_files",
    ),
    Case("251 files in one job", job(files=251, make=lambda j: b"x"), 413, "too_many_files"),
    Case(
        "36 MB job (max_job_bytes 30 MB)",
        job(files=4, make=lambda j: b"\0" * (9 * MB)),
        413,
        "request_too_large",
    ),
    Case(
        "job in field `file`",
        lambda ctx: ctx.client.post("/jobs", files={"file": ("a.jpg", ctx.jpeg)}),
        422,
        "missing_field",
    ),
    Case(
        "job without files",
        lambda ctx: ctx.client.post("/jobs", data={"callback_url": "http://x"}),
        422,
        "missing_field",
    ),
    Case(
        "callback_url file:///etc/passwd",
        job(callback_url="file:///etc/passwd"),
        422,
        "invalid_field",
    ),
    Case("callback_url javascript:", job(callback_url="javascript:alert(1)"), 422, "invalid_field"),
    Case("callback_url ftp://", job(callback_url="ftp://127.0.0.1/x"), 422, "invalid_field"),
    Case(
        "Idempotency-Key of 10,000 characters",
        lambda ctx: ctx.client.post(
            "/jobs", files={"files": ("a.jpg", ctx.jpeg)}, headers={"Idempotency-Key": "k" * 10_000}
        ),
        422,
        "validation_error",
    ),
    Case(
        "unknown job id", lambda ctx: ctx.client.get("/jobs/0123456789abcdef"), 404, "job_not_found"
    ),
    Case(
        "cancel an unknown job",
        lambda ctx: ctx.client.delete("/jobs/0123456789abcdef"),
        404,
        "job_not_found",
    ),
    Case(
        "malformed job id", lambda ctx: ctx.client.get("/jobs/not$an$id"), 422, "validation_error"
    ),
    Case(
        "job id of 65 characters",
        lambda ctx: ctx.client.get("/jobs/" + "a" * 65),
        422,
        "validation_error",
    ),
    Case("offset -1", page(offset=-1), 422, "validation_error"),
    Case("offset 2**63", page(offset=2**63), 422, "validation_error"),
    Case("offset 'ten'", page(offset="ten"), 422, "validation_error"),
    Case("limit 0", page(limit=0), 422, "validation_error"),
    Case("limit 10**9", page(limit=10**9), 422, "validation_error"),
]


# -- checks shared by every case -----------------------------------------------------------


def assert_sentence(detail: object) -> None:
    """What a person reads: a few printable words, not a traceback or an echo of the input."""
    assert isinstance(detail, str), detail
    assert detail.isprintable() and len(detail.split()) >= 3 and len(detail) <= 1000, detail
    assert "Traceback" not in detail


def assert_answer(response: httpx.Response, status: int, reason: str | None) -> None:
    assert response.status_code == status, response.text[:2000]
    body = response.json()
    if reason is not None:
        assert body["reason"] == reason, body
        assert_sentence(body["detail"])
    elif status == 200:  # classified
        assert body["label"] in ("cat", "dog")
        assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def upload_keys(stack: Stack) -> list[bytes]:
    return [key for pattern in UPLOAD_KEYS for key in stack.redis.scan_iter(match=pattern)]


def process_ids(stack: Stack) -> dict[str, Any]:
    """The stack's process ids: each process it started, and each worker pool process."""
    store = Store.from_url(stack.redis_url)
    try:
        pool = {hb.pid for hb in store(workers.live()) if hb.hostname.startswith("w1@")}
    finally:
        store.redis.close()
    started = {p.name: p.popen.pid for p in stack.processes if p.alive()}
    return {"started": started, "pool": pool}


@pytest.fixture(scope="module")
def pids_at_start(stack: Stack) -> dict[str, Any]:
    return process_ids(stack)


@pytest.fixture(autouse=True)
def nothing_kept_and_nobody_restarted(
    stack: Stack, pids_at_start: dict[str, Any]
) -> Iterator[None]:
    yield
    assert upload_keys(stack) == []
    assert process_ids(stack) == pids_at_start


@pytest.fixture(scope="module")
def jpeg(photo_dir: Path) -> bytes:
    return sorted((photo_dir / "kaggle").glob("*.jpg"))[0].read_bytes()


@pytest.fixture(scope="module")
def finished_job(stack: Stack, jpeg: bytes) -> str:
    with stack.client() as client:
        job_id: str = client.post("/jobs", files={"files": ("a.jpg", jpeg)}).json()["job_id"]
        wait_for_job(client, job_id)
    return job_id


def test_the_table_holds_at_least_40_cases_each_named_once() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_each_input_gets_its_status_and_reason(
    client: httpx.Client, jpeg: bytes, finished_job: str, case: Case
) -> None:
    assert_answer(case.send(Ctx(client, jpeg, finished_job)), case.status, case.reason)


def test_an_oversized_upload_sent_without_content_length_is_413(client: httpx.Client) -> None:
    def body() -> Iterator[bytes]:
        yield multipart(b"x.jpg", b"").split(b"\r\n--" + BOUNDARY.encode() + b"--")[0]
        for _ in range(120):  # 12 MB, streamed chunk by chunk
            yield b"\xff" * 100_000
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    response = client.post(
        "/predict",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert_answer(response, 413, "too_large")


def test_an_exif_rotated_photo_is_classified_upright(client: httpx.Client, photo_dir: Path) -> None:
    """Sideways pixels with an EXIF tag that turns them upright get the upright photo's
    answer; the same pixels without the tag, a different one (so the check can fail). The
    photo is the one of twelve whose orientation the small fixture model notices most."""

    def dog(data: bytes) -> tuple[str, float]:
        body = client.post("/predict", files={"file": ("p.jpg", data, "image/jpeg")}).json()
        return body["label"], body["probabilities"]["dog"]

    trials = []
    for path in sorted((photo_dir / "kaggle").glob("*.jpg"))[:12]:
        upright = photo(path.read_bytes())
        sideways = upright.rotate(90, expand=True)  # counter-clockwise; orientation 6 undoes it
        trials.append(
            (
                dog(encode(upright, "JPEG", quality=95)),
                dog(with_exif_orientation(sideways, 6)),
                dog(encode(sideways, "JPEG", quality=95)),
            )
        )
    original, tagged, ignored = max(trials, key=lambda t: abs(t[2][1] - t[0][1]))
    noticed = abs(ignored[1] - original[1])
    assert noticed > 1e-3, trials
    assert tagged[0] == original[0]
    assert abs(tagged[1] - original[1]) < noticed / 4, (original, tagged, ignored)


def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 exchange over a socket: headers no HTTP client would send."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as conn:
        conn.sendall(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        conn.sendall(body)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    header_block, _, payload = received.partition(b"\r\n\r\n")
    status_line, *lines = header_block.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, payload


@pytest.mark.parametrize("request_id", [b"abc\x01def", b"abc\x1b[31mdef", b"a\tb"])
def test_an_x_request_id_with_control_characters_is_replaced_not_echoed(
    stack: Stack, jpeg: bytes, request_id: bytes
) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: gateway\r\nX-Request-ID: "
        + request_id
        + b"\r\n"
        + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n".encode()
    )
    status, headers, payload = raw_request(stack.url, head, multipart(b"a.jpg", jpeg))
    if request_id.isascii() and request_id.replace(b"\t", b"").isalnum():
        # A tab is allowed in a header value: the gateway serves it under an id of its own.
        assert status == 200, payload[:500]
        assert headers["x-request-id"].isalnum()
    else:
        # Other control characters: the HTTP parser refuses the request before any route
        # runs, in the gateway's own error body.
        body = json.loads(payload)
        assert (status, body["reason"]) == (400, "invalid_http"), payload
        assert "control character" in body["detail"]
    assert headers.get("x-request-id", "").encode() != request_id


def test_strange_file_names_are_stored_echoed_and_written_to_csv_safely(
    stack: Stack, client: httpx.Client, jpeg: bytes
) -> None:
    names = {
        b"../../etc/passwd.jpg": "passwd.jpg",
        b"a\x01b\x1b[31mc\x7f.jpg": "a\ufffdb\ufffd[31mc\ufffd.jpg",
        b"n" * 1000 + b".jpg": "n" * 251 + ".jpg",
        b"caf\xc3\xa9\xff\xfe.jpg": "caf\u00e9\ufffd\ufffd.jpg",
        b"=SUM(1+2)*cmd|' -C calc'!A0.jpg": "=SUM(1+2)*cmd|' -C calc'!A0.jpg",
        b"comma, and space.jpg": "comma, and space.jpg",
    }
    body = (
        b"".join(
            multipart(raw, jpeg, field=b"files").removesuffix(f"--{BOUNDARY}--\r\n".encode())
            for raw in names
        )
        + f"--{BOUNDARY}--\r\n".encode()
    )
    response = client.post(
        "/jobs", content=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert wait_for_job(client, job_id)["status"] == "succeeded"
    items = client.get(f"/jobs/{job_id}").json()["results"]["items"]
    echoed = [item["filename"] for item in items]
    assert echoed == list(names.values())
    assert all(name.isprintable() for name in echoed)
    rendered = render([row(item["filename"], item) for item in items], "csv")
    cells = [record[0] for record in csv.reader(io.StringIO(rendered))][1:]
    assert cells == [csv_cell(name) for name in echoed]  # one row each: nothing split a row
    assert cells[4].startswith("'=")  # a spreadsheet shows it, never runs it


@pytest.mark.parametrize(
    ("color", "status", "reason"),
    [(True, 422, "decompression_bomb"), (False, 200, None)],
    ids=["16-bit rgb: refused from its header", "16-bit grayscale: decoded within budget"],
)
def test_eight_concurrent_7000x7000_16_bit_pngs_get_answers_and_nobody_restarts(
    stack: Stack, color: bool, status: int, reason: str | None
) -> None:
    data = png_16_bit(7000, 7000, color=color)  # 294 MB (RGB) or 98 MB (gray) decoded

    def send(_: int) -> httpx.Response:
        with stack.client(timeout_s=60) as http:
            return http.post("/predict", files={"file": ("big.png", data, "image/png")})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(8)))
    for response in responses:
        assert_answer(response, status, reason)
