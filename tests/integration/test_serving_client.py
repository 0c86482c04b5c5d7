"""The `catdog` command against the shared stack (as a user runs it: a subprocess)."""

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.processes import REPO_ROOT, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def catdog(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", "--url", stack.url, *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO_ROOT,
    )


def test_predict_prints_one_json_row_per_photo(stack: Stack, photo_dir: Path) -> None:
    photos = sorted((photo_dir / "pet").glob("*.jpg"))[:3]
    result = catdog(stack, "predict", *map(str, photos), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["filename"] for r in rows] == [p.name for p in photos]
    assert all(r["label"] in ("cat", "dog") and r["error"] is None for r in rows)
    assert all(r["p_cat"] + r["p_dog"] == pytest.approx(1.0) for r in rows)
    assert {r["model_version"] for r in rows} == {"1"}


def test_predict_reports_a_bad_photo_in_its_row_and_exits_1(
    stack: Stack, photo_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    good = sorted((photo_dir / "pet").glob("*.jpg"))[0]
    result = catdog(stack, "predict", str(good), str(bad))
    assert result.returncode == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0]["label"] in ("cat", "dog") and rows[0]["error"] == ""
    assert rows[1]["error"].startswith("empty:")


def test_jobs_submit_waits_with_progress_and_writes_csv(
    stack: Stack, photo_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shelter"
    (folder / "room-2").mkdir(parents=True)
    photos = sorted((photo_dir / "kaggle").glob("*.jpg"))[:30]
    for photo in photos[:20]:
        shutil.copy(photo, folder)
    for photo in photos[20:]:
        shutil.copy(photo, folder / "room-2")
    (folder / "readme.txt").write_text("not a photo, skipped")
    output = tmp_path / "results.csv"
    result = catdog(stack, "jobs", "submit", str(folder), "--wait", "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "classifying" in result.stderr and "100%" in result.stderr  # the progress bar
    rows = list(csv.DictReader(output.open()))
    assert len(rows) == 30
    assert all(r["label"] in ("cat", "dog") and r["error"] == "" for r in rows)
    assert sorted(r["filename"] for r in rows) == sorted(p.name for p in photos)


def test_jobs_submit_without_wait_prints_the_job(
    stack: Stack, photo_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    for photo in sorted((photo_dir / "pet").glob("*.jpg"))[:2]:
        shutil.copy(photo, folder)
    result = catdog(stack, "jobs", "submit", str(folder))
    assert result.returncode == 0, result.stderr
    accepted = json.loads(result.stdout)
    assert accepted["total"] == 2
    status = catdog(stack, "jobs", "status", accepted["job_id"])
    assert status.returncode == 0
    assert json.loads(status.stdout)["job_id"] == accepted["job_id"]
