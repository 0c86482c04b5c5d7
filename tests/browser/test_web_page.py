"""The page at `/`, in a real Chromium, against the real stack with a model that works.

Errors the stack can be made to give for real are real (422, 413, 415, 404); the others
(401, 409, 410, 429, 503, 504, a lost connection) are answered by Playwright's router in
place of the gateway, with the gateway's own error bodies."""

import base64
import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageStat
from playwright.sync_api import Page, Route, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from client.output import render, row
from tests.browser.conftest import Photos
from tests.browser.pages import horizontal_overflow, serious_violations, uploaded_file
from tests.integration.processes import Stack, all_items, scrape, total, wait_until

JOB_URL = re.compile(r"/\?job=([0-9a-f]{32})$")


def percent(p: float) -> str:
    return f"{p * 100:.1f}%"


def job_id_of(page: Page) -> str:
    match = JOB_URL.search(page.url)
    assert match, page.url
    return match.group(1)


def test_one_photo_shows_its_label_confidence_and_model_version(page: Page, photos: Photos) -> None:
    for photo, label in ((photos.cat, "cat"), (photos.dog, "dog")):
        page.set_input_files("#photos-input", photo)
        expect(page.locator("#single-file")).to_have_text(photo.name)
        expect(page.locator("#single-label")).to_have_text(label)
        # The worker's probability, to the digit the page shows, equals in-process inference.
        expect(page.locator("#single-confidence")).to_have_text(percent(photos.scores[photo.name]))
        bars = page.locator("#single-bars li")
        expect(bars).to_have_count(2)
        expect(bars.nth(0)).to_contain_text(re.compile(r"^cat\s*\d+\.\d%$"))
        expect(bars.nth(1)).to_contain_text(re.compile(r"^dog\s*\d+\.\d%$"))
        expect(page.locator("#single-model")).to_have_text("catdog version 1")
        expect(page.locator("#single-photo")).to_be_visible()


def test_a_banner_is_answered_with_a_warning_that_it_may_not_be_a_pet(
    page: Page, photos: Photos, tmp_path: Path
) -> None:
    warning = page.locator("#single-not-pet")
    page.set_input_files("#photos-input", photos.cat)
    expect(page.locator("#single-label")).to_have_text("cat")
    expect(warning).to_be_hidden()

    banner = Image.new("RGB", (600, 300), (200, 30, 60))
    ImageDraw.Draw(banner).text(
        (30, 110), "ADOPTED!", fill="white", font=ImageFont.load_default(size=64)
    )
    path = tmp_path / "adopted-banner.png"
    banner.save(path)
    page.set_input_files("#photos-input", path)
    expect(page.locator("#single-file")).to_have_text(path.name)
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("may not be a cat or a dog")


def test_a_photo_dropped_on_the_page_is_classified(page: Page, photos: Photos) -> None:
    drop = page.evaluate_handle(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], name, { type: "image/jpeg" }));
            return data;
        }""",
        [photos.dog.name, base64.b64encode(photos.dog.read_bytes()).decode()],
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": drop})
    expect(page.locator("#single-file")).to_have_text(photos.dog.name)
    expect(page.locator("#single-label")).to_have_text("dog")


def test_a_folder_becomes_a_job_of_the_photos_in_it(
    page: Page, photos: Photos, tmp_path: Path
) -> None:
    folder = tmp_path / "shelter"
    (folder / "kennel-2").mkdir(parents=True)
    shutil.copy(photos.cat, folder / photos.cat.name)
    shutil.copy(photos.dog, folder / "kennel-2" / photos.dog.name)
    shutil.copy(photos.dog, folder / ".thumbnail.jpg")  # hidden: not a photo to send
    (folder / "notes.txt").write_text("not a photo")
    page.set_input_files("#folder-input", folder)
    expect(page.locator("#job-summary")).to_have_text(
        "Finished: 2 of 2 photos classified, 0 failed."
    )
    expect(page.locator("#grid .tile-name")).to_have_text([photos.cat.name, photos.dog.name])


def test_a_correction_of_a_wrong_answer_is_counted_in_metrics(
    page: Page, photos: Photos, stack: Stack
) -> None:
    def wrong_answers() -> float:
        return total(
            scrape(f"{stack.url}/metrics"), "catdog_gateway_feedback_total", outcome="wrong"
        )

    before = wrong_answers()
    truth = photos.mistaken.name.split("-")[0].lower()  # Cat-7009.jpg -> cat
    page.set_input_files("#photos-input", photos.mistaken)
    expect(page.locator("#single-label")).not_to_have_text(truth)
    page.get_by_role("button", name=f"This is wrong: it is a {truth}").click()
    expect(page.locator("#single-feedback")).to_contain_text(
        f"your correction ({truth}) was counted"
    )
    assert wrong_answers() == before + 1


def test_a_phone_photo_is_shrunk_upright_before_upload(page: Page, phone_photo: Path) -> None:
    uploads: list[bytes] = []

    def keep_upload(route: Route) -> None:
        uploads.append(uploaded_file(route.request))
        route.continue_()

    page.route("**/predict", keep_upload)
    page.set_input_files("#photos-input", phone_photo)
    expect(page.locator("#single-label")).to_have_text("dog")
    sent = Image.open(io.BytesIO(uploads[0]))
    # Stored 3024 x 4032 with EXIF orientation 6: upright it is landscape, short side 448.
    assert sent.size == (597, 448)
    upright = Image.open(phone_photo)
    upright = upright.transpose(Image.Transpose.ROTATE_270).resize(sent.size).convert("RGB")
    difference = ImageStat.Stat(ImageChops.difference(sent.convert("RGB"), upright)).mean
    assert max(difference) < 8, difference  # the same picture, the same way up
    original, after = phone_photo.stat().st_size, len(uploads[0])
    print(f"\nupload size: {original} bytes before, {after} bytes after resizing")
    assert after * 10 < original
    expect(page.locator("#single-sent")).to_contain_text("shrunk to 597 × 448 px from")


def test_a_text_file_is_refused_with_the_422_sentence(page: Page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Rex: brown, friendly, good with children.\n")
    with page.expect_response("**/predict") as answer:
        page.set_input_files("#photos-input", notes)
    assert answer.value.status == 422
    expect(page.locator("#problem-text")).to_have_text(
        "This file is not a photo. Choose a JPEG, PNG, WebP, GIF, BMP or TIFF image."
    )
    expect(page.locator("#single-photo")).to_be_hidden()


@pytest.mark.parametrize(
    ("name", "content", "status", "says"),
    [
        ("huge.jpg", b"\xff\xd8" + bytes(11 * 1024 * 1024), 413, "larger than the service accepts"),
        ("scan.pdf", b"%PDF-1.7\n" + bytes(1000), 415, "This kind of file is not supported."),
    ],
    ids=["413", "415"],
)
def test_real_413_and_415_answers_are_sentences(
    page: Page, tmp_path: Path, name: str, content: bytes, status: int, says: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with page.expect_response("**/predict") as answer:
        page.set_input_files("#photos-input", path)
    assert answer.value.status == status
    expect(page.locator("#problem-text")).to_contain_text(says)


def test_an_unknown_job_link_says_the_job_does_not_exist(page: Page) -> None:
    page.goto("/?job=0123456789abcdef0123456789abcdef")
    expect(page.locator("#problem-text")).to_have_text(
        "This job does not exist. Check the link, or submit the photos again."
    )


def _answer(status: int, reason: str, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    def fulfil(route: Route) -> None:
        body = json.dumps({"detail": f"(the gateway's detail for {reason})", "reason": reason})
        route.fulfill(status=status, body=body, content_type="application/json", headers=headers)

    return fulfil


@pytest.mark.parametrize(
    ("status", "reason", "headers", "where", "says"),
    [
        (429, "queue_full", {"Retry-After": "7"}, "#notice",
         "The service is busy right now: its queue is full. Trying again in 7 seconds…"),
        (503, "no_worker", {}, "#notice",
         "No classifier is running right now, so photos cannot be classified. Trying again in 1 second…"),
        (504, "timeout", {}, "#problem-text",
         "The classifier did not answer in time; the service may be overloaded."),
    ],
    ids=["429", "503", "504"],
)  # fmt: skip
def test_busy_and_unavailable_answers_are_sentences(
    page: Page, photos: Photos, status: int, reason: str, headers: dict[str, str], where: str,
    says: str,
) -> None:  # fmt: skip
    page.route("**/predict", _answer(status, reason, headers))
    page.set_input_files("#photos-input", photos.cat)
    expect(page.locator(where)).to_have_text(says)


def test_an_expired_job_says_so(page: Page) -> None:
    page.route("**/jobs/**", _answer(410, "job_expired"))
    page.goto("/?job=0123456789abcdef0123456789abcdef")
    expect(page.locator("#problem-text")).to_have_text(
        "This job's results have expired and were deleted. Submit the photos again."
    )
    expect(page.locator("#problem-detail")).to_have_text(
        "Details: (the gateway's detail for job_expired)"
    )


def test_a_conflicting_correction_says_the_first_one_stands(page: Page, photos: Photos) -> None:
    page.route("**/feedback", _answer(409, "feedback_conflict"))
    page.set_input_files("#photos-input", photos.cat)
    page.get_by_role("button", name="This is wrong: it is a dog").click()
    expect(page.locator("#single-feedback")).to_have_text(
        "This photo was already corrected with the other label; that one stands."
    )


def test_a_lost_connection_is_retried_and_said(page: Page, photos: Photos) -> None:
    attempts: list[str] = []

    def drop_first(route: Route) -> None:
        attempts.append(route.request.url)
        if len(attempts) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/predict", drop_first)
    page.set_input_files("#photos-input", photos.cat)
    expect(page.locator("#notice")).to_have_text(
        "The connection to the service was lost. Retrying in 1 second…"
    )
    expect(page.locator("#single-label")).to_have_text("cat")
    expect(page.locator("#notice")).to_have_text("")
    assert len(attempts) == 2


def test_a_401_asks_for_an_api_key_and_keeps_it_for_the_tab(page: Page, photos: Photos) -> None:
    keys: list[str | None] = []

    def need_key(route: Route) -> None:
        keys.append(route.request.headers.get("x-api-key"))
        if keys[-1] == "s3cret":
            route.continue_()
        else:
            _answer(401, "unauthorized")(route)

    page.route("**/predict", need_key)
    page.set_input_files("#photos-input", photos.cat)
    expect(page.locator("#key-message")).to_have_text(
        "This service needs an API key. Enter it below; it is kept in this browser tab only."
    )
    page.get_by_label("API key").fill("typo")
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#key-message")).to_have_text(
        "That API key was not accepted. Check it and enter it again."
    )
    page.get_by_label("API key").fill("s3cret")
    page.keyboard.press("Enter")
    expect(page.locator("#single-label")).to_have_text("cat")
    assert keys == [None, "typo", "s3cret"]
    assert page.evaluate("sessionStorage.getItem('catdog.apiKey')") == "s3cret"
    assert page.evaluate("localStorage.length") == 0


def test_a_20_photo_job_runs_to_completion_and_its_csv_has_20_rows(
    page: Page, photos: Photos, stack: Stack, screenshots: Path | None
) -> None:
    page.set_input_files("#photos-input", photos.twenty)
    expect(page.locator("#job-summary")).to_have_text(
        "Finished: 20 of 20 photos classified, 0 failed.", timeout=90_000
    )
    expect(page.locator("#count-done")).to_have_text("20")
    job_id = job_id_of(page)
    tiles = page.locator("#grid .tile")
    expect(tiles).to_have_count(20)
    expect(page.locator("#grid .tile img")).to_have_count(20)
    with stack.client() as http:
        items = all_items(http, job_id)
    truth = {i["filename"]: i["filename"].split("-")[0].lower() for i in items}
    assert {i["filename"]: i["label"] for i in items} == truth

    first = items[0]
    other = "dog" if first["label"] == "cat" else "cat"
    page.get_by_role("button", name=f"{first['filename']} is wrong: it is a {other}").click()
    expect(tiles.first.locator(".feedback-status")).to_have_text("Correction counted.")

    page.get_by_label("Cats").check()
    expect(page.locator("#grid .tile:visible")).to_have_count(10)
    expect(page.locator("#grid .tile:visible .label.cat")).to_have_count(10)
    page.get_by_label("All").check()

    with page.expect_download() as download:
        page.get_by_role("button", name="Download results (CSV)").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert len(list(csv.DictReader(io.StringIO(text)))) == 20
    # The same file `catdog jobs results` writes for this job, byte for byte.
    assert text == render([row(i["filename"], i) for i in items], "csv")
    assert serious_violations(page) == []
    if screenshots:
        page.screenshot(path=screenshots / "job-desktop.png", full_page=True)


def test_reload_restores_a_running_job_and_cancel_stops_it(
    page: Page, photos: Photos, stack: Stack, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos.cat.read_bytes()[:2000])  # a JPEG cut short
    page.set_input_files("#photos-input", [broken, *photos.many])
    summary = page.locator("#job-summary")
    expect(summary).to_contain_text(re.compile(r"^Running: [1-9]\d* of 301 photos done"))
    job_url = page.url
    job_id = job_id_of(page)

    page.reload()
    expect(page).to_have_url(job_url)
    expect(page.locator("#job-id")).to_have_text(job_id)
    expect(summary).to_contain_text(re.compile(r"^Running: [1-9]\d* of 301 photos done"))
    expect(page.locator("#grid .tile")).to_have_count(301)
    expect(page.locator("#grid .tile").first).to_contain_text(
        "This photo is damaged: the file is cut short."
    )
    page.get_by_role("button", name="Cancel job").click()
    expect(summary).to_contain_text(re.compile(r"^Cancelled: \d+ photos were classified"))
    expect(page.get_by_role("button", name="Cancel job")).to_be_disabled()

    with stack.client() as http:
        cancelled = http.get(f"/jobs/{job_id}", params={"limit": 1}).json()
        assert cancelled["status"] == "cancelled"
        assert cancelled["pending"] > 0
        # Nothing is classified after the cancel, even by chunks that were already running.
        bulk = stack.redis
        wait_until(lambda: bulk.llen("bulk") == 0, 60, "the revoked chunks to drain")
        later = http.get(f"/jobs/{job_id}", params={"limit": 1}).json()
    assert (later["done"], later["failed"]) == (cancelled["done"], cancelled["failed"])
    page.get_by_label("Failed").check()
    expect(page.locator("#grid .tile:visible")).to_have_count(1)


def test_keyboard_alone_classifies_a_photo_and_sends_a_correction(
    page: Page, photos: Photos
) -> None:
    def tab_to(element_id: str) -> None:
        for _ in range(15):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == element_id:
                return
        raise AssertionError(f"Tab never reached #{element_id}")

    tab_to("choose-photos")
    chooser = None
    # Headless Chromium opens no chooser on Enter here, and on a busy machine it can drop a
    # first Space while the page is still settling: a few tries, each from the focused control.
    for _ in range(3):
        try:
            with page.expect_file_chooser(timeout=10_000) as opened:
                page.keyboard.press("Space")
            chooser = opened.value
            break
        except PlaywrightTimeoutError:
            assert page.evaluate("document.activeElement.id") == "choose-photos"
    assert chooser is not None, "Space on the focused control never opened a file chooser"
    chooser.set_files(photos.dog)
    expect(page.locator("#single-label")).to_have_text("dog")
    tab_to("single-wrong")
    page.keyboard.press("Enter")
    expect(page.locator("#single-feedback")).to_contain_text("was counted")


def test_phone_width_has_no_horizontal_scroll_and_no_serious_axe_violations(
    phone: Page, photos: Photos, screenshots: Path | None
) -> None:
    assert horizontal_overflow(phone) == 0
    assert serious_violations(phone) == []
    phone.set_input_files("#photos-input", photos.dog)
    expect(phone.locator("#single-label")).to_have_text("dog")
    assert horizontal_overflow(phone) == 0
    assert serious_violations(phone) == []
    if screenshots:
        phone.screenshot(path=screenshots / "one-photo-phone.png", full_page=True)
    phone.set_input_files("#photos-input", [photos.cat, photos.dog, photos.mistaken])
    expect(phone.locator("#job-summary")).to_contain_text("Finished: 3 of 3", timeout=60_000)
    assert horizontal_overflow(phone) == 0
    assert serious_violations(phone) == []
