"""The dependency audit's exceptions expire on their date, and the secret scan fails on a
secret that is not in the reviewed baseline."""

import hashlib
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


def test_a_new_secret_in_the_tree_fails_the_scan_and_a_results_commit_id_does_not() -> None:
    # Made here, so that this file holds no 40-hex literal for the scan to flag.
    commit = hashlib.sha1(b"a measured commit").hexdigest()
    planted = {
        ROOT / "common" / "zz_planted_secret_test.py": (
            'AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n'
        ),
        # The same hex under another name is still a finding: only a commit id is let through.
        ROOT / "bench" / "zz_planted_token_test.json": f'{{\n  "token": "{commit}"\n}}\n',
        ROOT / "bench" / "zz_planted_result_test.json": (
            f'{{\n  "machine": {{\n    "commit": "{commit}",\n    "cores": 2\n  }}\n}}\n'
        ),
    }
    for path, text in planted.items():
        path.write_text(text)
    try:
        scan = subprocess.run(
            [sys.executable, "scripts/scan_secrets.py"], cwd=ROOT, capture_output=True, text=True
        )
    finally:
        for path in planted:
            path.unlink()
    assert scan.returncode == 1
    assert "zz_planted_secret_test.py" in scan.stdout
    assert "zz_planted_token_test.json" in scan.stdout
    assert "zz_planted_result_test.json" not in scan.stdout
