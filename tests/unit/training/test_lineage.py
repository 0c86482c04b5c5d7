"""A run records the commit it ran at, marked `-dirty` when tracked code differs from it;
benchmark results are measurements, so a rewritten results file leaves the mark off."""

import subprocess
from pathlib import Path

import pytest

from training.lineage import git_commit


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    git("init", "-q")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "serving-history.md").write_text("one run\n")
    (tmp_path / "serve.py").write_text("print('v1')\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    return git("rev-parse", "HEAD").strip()


def test_a_clean_checkout_records_its_commit(checkout: str) -> None:
    assert git_commit() == checkout


def test_rewritten_results_leave_the_commit_clean(checkout: str) -> None:
    Path("bench/results/serving-history.md").write_text("two runs\n")
    assert git_commit() == checkout


def test_changed_code_marks_the_commit_dirty(checkout: str) -> None:
    Path("serve.py").write_text("print('v2')\n")
    assert git_commit() == f"{checkout}-dirty"


def test_the_mark_is_the_same_from_a_subfolder(
    checkout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("serve.py").write_text("print('v2')\n")
    monkeypatch.chdir("bench")
    assert git_commit() == f"{checkout}-dirty"
    Path("../serve.py").write_text("print('v1')\n")
    Path("results/serving-history.md").write_text("three runs\n")
    assert git_commit() == checkout
