"""Structured logs on the live local stack: the request id travels from the gateway into the
worker's task and is on both sides' JSON lines, with route, status, latency, label,
probability and model version; and no log ever holds a photo's bytes, raw or encoded."""

import base64
import json
import logging
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.logging_setup import JsonFormatter
from tests.integration.conftest import MODEL_VERSION
from tests.integration.processes import Stack, wait_for_job, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WINDOW = 32  # bytes (or characters of an encoding) that count as a leaked slice


def encodings(data: bytes) -> list[str]:
    """The bytes as text in every form a log line could carry them."""
    raw = data.decode("latin-1")
    as_str = repr(data)[2:-1]  # str(bytes), as json.dumps(default=str) writes a bytes value
    texts = [raw, json.dumps(raw)[1:-1], as_str, json.dumps(as_str)[1:-1], data.hex()]
    # Base64 of any slice lines up with the encoding from one of three offsets.
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            texts.append(encode(data[shift:]).decode()[:-4])  # without the padded last group
    return texts


def slices(texts: Iterable[str]) -> set[str]:
    """Every WINDOW-long slice, less the degenerate ones (runs of one or two characters)."""
    found = set()
    for text in texts:
        for i in range(len(text) - WINDOW + 1):
            piece = text[i : i + WINDOW]
            if len(set(piece)) > 3:
                found.add(piece)
    return found


def leaks(log: bytes, secret: set[str]) -> list[str]:
    """Slices of `secret` found in `log`, read as UTF-8 (text logged) and as latin-1 (bytes
    written straight to the stream)."""
    found = []
    for text in {log.decode("utf-8", "replace"), log.decode("latin-1")}:
        found += [
            text[i : i + WINDOW]
            for i in range(len(text) - WINDOW + 1)
            if text[i : i + WINDOW] in secret
        ]
    return found


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines


def test_the_leak_detector_finds_bytes_logged_in_any_of_those_forms(photo_dir: Path) -> None:
    photo = (photo_dir / "kaggle" / "cat.31.jpg").read_bytes()
    secret = slices(encodings(photo))
    piece = photo[1000:1040]
    formatter = JsonFormatter()
    for value in (
        piece,
        piece.decode("latin-1"),
        base64.b64encode(photo[1001:1041]).decode(),
        piece.hex(),
    ):
        record = logging.makeLogRecord({"msg": "upload", "levelname": "INFO", "data": value})
        assert leaks(formatter.format(record).encode(), secret), repr(value)[:40]
    assert not leaks(b'{"message": "prediction", "label": "cat", "probability": 0.93}', secret)


def test_the_request_id_reaches_the_workers_log_and_no_log_holds_the_photo(
    stack: Stack, client: httpx.Client, photo_dir: Path
) -> None:
    photo_path = photo_dir / "kaggle" / "dog.30.jpg"
    photo = photo_path.read_bytes()
    predict_id, job_id_header = f"log-predict-{uuid.uuid4().hex}", f"log-job-{uuid.uuid4().hex}"
    answer = client.post(
        "/predict",
        files={"file": (photo_path.name, photo, "image/jpeg")},
        headers={"X-Request-ID": predict_id},
    )
    assert answer.status_code == 200, answer.text
    job = client.post(
        "/jobs",
        files=[("files", (photo_path.name, photo, "image/jpeg"))] * 2,
        headers={"X-Request-ID": job_id_header},
    )
    assert job.status_code == 202, job.text
    wait_for_job(client, job.json()["job_id"])

    def worker_lines(request_id: str, message: str) -> list[dict[str, Any]]:
        lines = json_lines(stack.worker_logs())
        return [x for x in lines if x.get("request_id") == request_id and x["message"] == message]

    # /predict: the gateway's access and answer lines, the worker's prediction line.
    gateway = [x for x in json_lines(stack.gateway_log()) if x.get("request_id") == predict_id]
    access = next(x for x in gateway if x["message"] == "request")
    assert (access["route"], access["status"]) == ("/predict", 200)
    assert access["latency_ms"] > 0 and access["timestamp"] and access["level"] == "INFO"
    served = next(x for x in gateway if x["message"] == "prediction served")
    assert (served["label"], served["model_version"]) == (answer.json()["label"], MODEL_VERSION)
    assert served["probability"] == pytest.approx(answer.json()["probability"], abs=1e-6)
    worker = wait_until(lambda: worker_lines(predict_id, "prediction"), 10, "the worker's line")[0]
    assert (worker["label"], worker["model_version"]) == (served["label"], MODEL_VERSION)
    assert worker["probability"] == served["probability"] and worker["latency_ms"] > 0

    # A job: its creator's request id is on the worker's chunk and job lines.
    job_lines = [x for x in json_lines(stack.gateway_log()) if x.get("request_id") == job_id_header]
    assert any(x.get("route") == "/jobs" and x.get("status") == 202 for x in job_lines)
    chunk = wait_until(lambda: worker_lines(job_id_header, "chunk done"), 10, "the chunk line")[0]
    assert chunk["model_version"] == MODEL_VERSION and sum(chunk["labels"].values()) == 2
    wait_until(lambda: worker_lines(job_id_header, "job finished"), 10, "the job-end line")

    # No log of the stack (gateway, worker, Redis) holds a slice of the photo.
    secret = slices(encodings(photo))
    logs = sorted(stack.log_dir.glob("*.log"))
    assert len(logs) >= 3
    for log in logs:
        found = leaks(log.read_bytes(), secret)
        assert not found, f"{log.name} holds bytes of the photo: {found[:3]}"
