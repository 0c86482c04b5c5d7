"""The dependency audit's exceptions expire on their date, and the secret scan fails on a
secret that is not in the reviewed baseline."""

import importlib.util
import subprocess
import sys
from datetime import date
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_accepted_vulnerability_counts_until_its_date_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = load("audit_dependencies")
    exceptions = tmp_path / "exceptions.txt"
    exceptions.write_text(
        "# comment\nGHSA-aaaa 2027-01-31 not reachable from our code\nPYSEC-1 2026-01-01 old\n"
    )
    monkeypatch.setattr(audit, "EXCEPTIONS", exceptions)
    assert audit.accepted(date(2026, 12, 1)) == {"GHSA-aaaa": "not reachable from our code"}
    assert audit.accepted(date(2027, 2, 1)) == {}


def test_the_committed_exceptions_file_parses() -> None:
    load("audit_dependencies").accepted(date.today())


def test_a_new_secret_in_the_tree_fails_the_scan(tmp_path: Path) -> None:
    leak = ROOT / "common" / "zz_planted_secret_test.py"
    leak.write_text('AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n')
    try:
        scan = subprocess.run(
            [sys.executable, "scripts/scan_secrets.py"], cwd=ROOT, capture_output=True, text=True
        )
    finally:
        leak.unlink()
    assert scan.returncode == 1 and "zz_planted_secret_test.py" in scan.stdout
