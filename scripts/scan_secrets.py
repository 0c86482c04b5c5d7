"""Scan the tree for secrets with detect-secrets; fail on any finding that is not in the
committed baseline (.secrets.baseline, whose entries were reviewed as not secrets).

After a reviewed false positive: `detect-secrets scan --baseline .secrets.baseline` and
mark it "is_secret": false. Files are what git would commit (tracked, or untracked and not
ignored).
"""

import json
import subprocess
import sys
from pathlib import Path

BASELINE = Path(".secrets.baseline")
# A benchmark result names the commit it measured (bench/serving.py: "commit", with "-dirty"
# when the tree differed). A git id is public, but the hex-entropy check flagged it in every
# new result file, so each machine's results needed a baseline entry of their own.
COMMIT_ID_LINE = r'^\s*"commit": "[0-9a-f]{40}(-dirty)?",?$'


def findings(report: dict) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(f, r["hashed_secret"]) for f, rs in report["results"].items() for r in rs}


def tree_files() -> list[str]:
    """What git would commit: tracked files and untracked ones it does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return [f for f in listed if f and f != str(BASELINE) and Path(f).is_file()]


def main() -> int:
    baseline = json.loads(BASELINE.read_text())
    scan = subprocess.run(
        [
            sys.executable,
            "-m",
            "detect_secrets",
            "scan",
            "--exclude-lines",
            COMMIT_ID_LINE,
            *tree_files(),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    new = findings(json.loads(scan.stdout)) - findings(baseline)
    for filename, _ in sorted(new):
        print(f"possible secret in {filename} (not in {BASELINE})")
    print(f"detect-secrets: {len(new)} new finding(s)")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
