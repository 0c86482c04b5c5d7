"""The harness's lean HTTP client (bench/http_client.py) against a real uvicorn server: its
prepared uploads must reach a FastAPI route as the photo they carry, and an answer it cannot
read must fail loudly rather than be miscounted."""

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Header, UploadFile
from fastapi.responses import StreamingResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from http_client import Connection, ProtocolError, upload_request


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict(file: UploadFile, x_api_key: str = Header("")) -> dict[str, object]:
        data = await file.read()
        return {"name": file.filename, "size": len(data), "head": data[:4].hex(), "key": x_api_key}

    @app.post("/chunked")
    async def chunked() -> StreamingResponse:
        return StreamingResponse(iter([b"a", b"b"]))

    return app


@pytest.fixture(scope="module")
def server_url(free_port: int) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(_app(), port=free_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{free_port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prepared_uploads_arrive_whole_on_one_kept_alive_connection(server_url: str) -> None:
    photos = [b"\xff\xd8\xff\xe0" + bytes(range(256)) * n for n in (1, 40, 400)]
    prepared = [upload_request(server_url, "/predict", p, {"X-API-Key": "k1"}) for p in photos]

    async def run() -> list[dict[str, object]]:
        connection = Connection(server_url)
        try:
            answers = [await connection.send(r) for r in prepared * 2]
        finally:
            await connection.close()
        assert all(a.status == 200 for a in answers)
        return [a.json() for a in answers]

    bodies = asyncio.run(run())
    assert [b["size"] for b in bodies] == [len(p) for p in photos] * 2
    assert {b["head"] for b in bodies} == {"ffd8ffe0"}
    assert {b["name"] for b in bodies} == {"photo.jpg"}
    assert {b["key"] for b in bodies} == {"k1"}


def test_an_answer_without_content_length_is_refused(server_url: str) -> None:
    request = upload_request(server_url, "/chunked", b"x")

    async def run() -> None:
        connection = Connection(server_url)
        try:
            await connection.send(request)
        finally:
            await connection.close()

    with pytest.raises(ProtocolError, match="without Content-Length"):
        asyncio.run(run())


def test_only_plain_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="plain http"):
        Connection("https://example.org")
