"""Bulk jobs end to end on the shared stack: a 200-photo job, per-item errors, paging,
cancellation, idempotency and signed callbacks."""

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from common.store import keys
from tests.integration.callbacks import CallbackReceiver
from tests.integration.processes import Stack, all_items, wait_for_job, wait_until
from worker.callbacks import SIGNATURE_HEADER, verify_signature

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MB = 1024 * 1024
CALLBACK_SECRET = "dev-callback-secret"  # the default: the shared stack does not set one


def _files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def _submit(client: httpx.Client, files: list[Any], **kwargs: Any) -> dict[str, Any]:
    response = client.post("/jobs", files=files, **kwargs)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == body["status_url"]
    assert body["status_url"].endswith(f"/jobs/{body['job_id']}")
    return body


@pytest.fixture(scope="module")
def kaggle(photo_dir: Path) -> list[Path]:
    return sorted((photo_dir / "kaggle").glob("*.jpg"))


def test_job_of_200_photos_completes_with_every_item_as_in_process(
    client: httpx.Client,
    kaggle: list[Path],
    checkpoint: Path,
    in_process: Callable[[Path, list[bytes]], list[dict[str, float]]],
) -> None:
    assert len(kaggle) == 200
    accepted = _submit(client, _files(kaggle))
    assert accepted["total"] == 200 and accepted["status"] == "queued"

    final = wait_for_job(client, accepted["job_id"], timeout_s=90)
    assert final["status"] == "succeeded"
    assert (final["done"], final["failed"], final["pending"]) == (200, 0, 0)
    assert final["started_at"] and final["finished_at"]
    items = all_items(client, accepted["job_id"])
    assert [item["index"] for item in items] == list(range(200))
    assert [item["filename"] for item in items] == [p.name for p in kaggle]
    expected = in_process(checkpoint, [p.read_bytes() for p in kaggle])
    for item, reference in zip(items, expected, strict=True):
        assert item["status"] == "succeeded"
        assert item["model"] == {"name": "catdog", "version": "1"}
        # Batched forward passes agree with one-at-a-time inference.
        assert item["probabilities"] == pytest.approx(reference, abs=1e-5)
        assert item["probability"] == pytest.approx(reference[item["label"]], abs=1e-5)


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_job_with_corrupt_files_reports_per_item_errors(
    client: httpx.Client, kaggle: list[Path]
) -> None:
    good = kaggle[0].read_bytes()
    files = [
        ("files", ("good.jpg", good, "image/jpeg")),
        ("files", ("empty.jpg", b"", "image/jpeg")),
        ("files", ("truncated.jpg", good[: len(good) // 3], "image/jpeg")),
        ("files", ("notes.jpg", b"these are not pixels\n" * 10, "image/jpeg")),
        ("files", ("doc.pdf", b"%PDF-1.7\n" + b"0" * 200, "application/pdf")),
        ("files", ("tiny.png", _png((8, 8)), "image/png")),
        ("files", ("huge.jpg", good + b"\0" * (10 * MB), "image/jpeg")),
        ("files", ("fine.png", _png((64, 48)), "image/png")),
    ]
    accepted = _submit(client, files)
    final = wait_for_job(client, accepted["job_id"])
    assert final["status"] == "succeeded"  # bad items fail alone, not the job
    assert (final["done"], final["failed"]) == (2, 6)
    items = {item["filename"]: item for item in all_items(client, accepted["job_id"])}
    assert items["good.jpg"]["status"] == items["fine.png"]["status"] == "succeeded"
    reasons = {name: item["error"]["reason"] for name, item in items.items() if item["error"]}
    assert reasons == {
        "empty.jpg": "empty",
        "truncated.jpg": "truncated",
        "notes.jpg": "not_an_image",
        "doc.pdf": "unsupported_media_type",
        "tiny.png": "too_small",
        "huge.jpg": "too_large",
    }
    assert all(items[name]["error"]["message"] for name in reasons)
    assert all(items[name]["label"] is None for name in reasons)


def test_job_whose_every_file_is_refused_fails_at_once(client: httpx.Client) -> None:
    files = [("files", (f"{i}.jpg", b"\0" * (10 * MB + 1), "image/jpeg")) for i in range(2)]
    accepted = _submit(client, files)
    assert accepted["status"] == "failed"
    body = client.get(f"/jobs/{accepted['job_id']}").json()
    assert (body["status"], body["done"], body["failed"]) == ("failed", 0, 2)


def test_results_are_paged_with_offset_and_limit(client: httpx.Client, kaggle: list[Path]) -> None:
    accepted = _submit(client, _files(kaggle[:23]))
    job_id = accepted["job_id"]
    wait_for_job(client, job_id)

    first = client.get(f"/jobs/{job_id}", params={"offset": 0, "limit": 10}).json()["results"]
    assert (first["offset"], first["limit"], first["next_offset"]) == (0, 10, 10)
    assert [i["index"] for i in first["items"]] == list(range(10))
    last = client.get(f"/jobs/{job_id}", params={"offset": 20, "limit": 10}).json()["results"]
    assert [i["index"] for i in last["items"]] == [20, 21, 22]
    assert last["next_offset"] is None
    beyond = client.get(f"/jobs/{job_id}", params={"offset": 50}).json()["results"]
    assert beyond["items"] == [] and beyond["next_offset"] is None
    followed = all_items(client, job_id, page=7)
    assert [i["index"] for i in followed] == list(range(23))
    assert [i["filename"] for i in followed] == [p.name for p in kaggle[:23]]
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "many"}):
        response = client.get(f"/jobs/{job_id}", params=params)
        assert response.status_code == 422, params
        assert response.json()["reason"] == "validation_error"


def test_cancel_stops_a_job_and_no_item_finishes_afterwards(
    client: httpx.Client, stack: Stack, kaggle: list[Path]
) -> None:
    files = (_files(kaggle) * 2)[:250]  # 32 chunks: still running when the cancel comes
    accepted = _submit(client, files)
    job_id = accepted["job_id"]
    wait_until(
        lambda: client.get(f"/jobs/{job_id}", params={"limit": 1}).json()["done"] > 0,
        30,
        "the job to start",
        every_s=0.02,
    )

    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_at"] and cancelled["finished_at"]
    assert 0 < cancelled["done"] < 250

    stack.wait_until_quiet()  # every chunk has run, been skipped or been revoked
    later = client.get(f"/jobs/{job_id}", params={"limit": 1000}).json()
    assert later["status"] == "cancelled"
    assert (later["done"], later["failed"]) == (cancelled["done"], cancelled["failed"])
    finished = [i for i in later["results"]["items"] if i["status"] != "pending"]
    assert len(finished) == cancelled["done"] + cancelled["failed"]
    # Queued chunks were revoked or skipped, and the images were deleted.
    assert stack.redis.llen("bulk") == 0
    assert not stack.redis.exists(*[keys.image(job_id, i) for i in range(250)])
    again = client.delete(f"/jobs/{job_id}")
    assert again.status_code == 200 and again.json()["done"] == cancelled["done"]


def test_cancelling_a_finished_job_is_a_conflict(client: httpx.Client, kaggle: list[Path]) -> None:
    accepted = _submit(client, _files(kaggle[:2]))
    wait_for_job(client, accepted["job_id"])
    response = client.delete(f"/jobs/{accepted['job_id']}")
    assert response.status_code == 409
    assert response.json()["reason"] == "job_finished"


def test_same_idempotency_key_returns_the_same_job_and_enqueues_nothing(
    client: httpx.Client, stack: Stack, kaggle: list[Path]
) -> None:
    key = f"shelter-upload-{time.time_ns()}"
    first = _submit(client, _files(kaggle[:5]), headers={"Idempotency-Key": key})
    wait_for_job(client, first["job_id"])
    jobs_before = len(list(stack.redis.scan_iter(match=keys.job("*"), count=1000)))

    response = client.post("/jobs", files=_files(kaggle[:5]), headers={"Idempotency-Key": key})
    assert response.status_code == 202
    assert response.headers["idempotent-replayed"] == "true"
    assert response.json()["job_id"] == first["job_id"]
    assert response.headers["location"] == first["status_url"]
    assert len(list(stack.redis.scan_iter(match=keys.job("*"), count=1000))) == jobs_before
    assert stack.redis.llen("bulk") == 0
    other = _submit(client, _files(kaggle[:1]), headers={"Idempotency-Key": key + "-other"})
    assert other["job_id"] != first["job_id"]


@pytest.mark.parametrize(
    "change", ["other photos", "one photo more", "same photos, other names", "a callback"]
)
def test_the_same_idempotency_key_with_another_upload_is_422_and_stores_nothing(
    client: httpx.Client, stack: Stack, kaggle: list[Path], change: str
) -> None:
    key = f"shelter-upload-{time.time_ns()}"
    first = _submit(client, _files(kaggle[:3]), headers={"Idempotency-Key": key})
    wait_for_job(client, first["job_id"])
    stored_before = set(stack.redis.scan_iter(match=keys.job("*"), count=1000))
    files, data = _files(kaggle[:3]), {}
    if change == "other photos":
        files = _files(kaggle[3:6])
    elif change == "one photo more":
        files = _files(kaggle[:4])
    elif change == "same photos, other names":
        files = [("files", (f"renamed-{name}", body, kind)) for _, (name, body, kind) in files]
    else:
        data = {"callback_url": "http://127.0.0.1:9/hook"}

    response = client.post("/jobs", files=files, data=data, headers={"Idempotency-Key": key})

    assert response.status_code == 422, response.text
    assert response.json()["reason"] == "idempotency_key_reused"
    assert first["job_id"] in response.json()["detail"]
    assert set(stack.redis.scan_iter(match=keys.job("*"), count=1000)) == stored_before
    assert stack.redis.llen("bulk") == 0


def test_callback_receives_one_signed_post_when_the_job_ends(
    client: httpx.Client,
    stack: Stack,
    kaggle: list[Path],
    receiver: Callable[[list[int]], CallbackReceiver],
) -> None:
    hook = receiver([])
    accepted = _submit(client, _files(kaggle[:3]), data={"callback_url": hook.url})
    wait_for_job(client, accepted["job_id"])
    wait_until(lambda: hook.calls, 15, "the callback")
    stack.wait_until_quiet()  # no job-end report or callback retry is left to run
    assert len(hook.calls) == 1
    headers, body, _ = hook.calls[0]
    assert verify_signature(body, headers[SIGNATURE_HEADER], CALLBACK_SECRET)
    assert not verify_signature(body, headers[SIGNATURE_HEADER], "another-secret")
    payload = json.loads(body)
    assert payload["job_id"] == accepted["job_id"]
    assert (payload["status"], payload["done"], payload["failed"]) == ("succeeded", 3, 0)
    wait_until(
        lambda: client.get(f"/jobs/{accepted['job_id']}").json()["callback_status"] == "delivered",
        5,
        "callback_status delivered",
    )


def test_callback_is_retried_with_backoff_until_it_is_accepted(
    client: httpx.Client,
    stack: Stack,
    kaggle: list[Path],
    receiver: Callable[[list[int]], CallbackReceiver],
) -> None:
    hook = receiver([500, 503])
    accepted = _submit(client, _files(kaggle[:2]), data={"callback_url": hook.url})
    wait_until(lambda: len(hook.calls) >= 3, 30, "three callback attempts")
    bodies = {body for _, body, _ in hook.calls}
    assert len(bodies) == 1  # the same signed body every time
    gaps = [b[2] - a[2] for a, b in zip(hook.calls, hook.calls[1:], strict=False)]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9  # 1 s, then 2 s
    wait_until(
        lambda: client.get(f"/jobs/{accepted['job_id']}").json()["callback_status"] == "delivered",
        5,
        "callback_status delivered",
    )
    stack.wait_until_quiet()
    assert len(hook.calls) == 3
