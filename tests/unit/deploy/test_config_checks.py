"""scripts/check-config.sh is part of the suite: the CircleCI and Compose schemas, hadolint on
both Dockerfiles, `docker-compose config` and `nginx -t` all pass, and the script fails when
one of them does not (it is not a script that always exits 0), and they pass as a user who
is not root."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CHECKED_FILES = [
    "scripts/check-config.sh",
    ".circleci/config.yml",
    "docker-compose.yml",
    ".env.example",
    "Dockerfile.gateway",
    "Dockerfile.worker",
    "deploy/nginx/nginx.conf",
    "deploy/nginx/resolver.conf",
]


def run_checks(root: Path) -> subprocess.CompletedProcess[str]:
    # The tools come from `make setup`: the venv's (check-jsonschema, hadolint) and apt's.
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", str(root / "scripts" / "check-config.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def copy_of_the_checked_files(tmp_path: Path) -> Path:
    for name in CHECKED_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_all_configuration_checks_pass() -> None:
    result = run_checks(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("vendor.circle-ci", "vendor.compose-spec", "hadolint", "docker-compose config"):
        assert check in result.stdout
    assert "check-config: all checks passed" in result.stdout


def test_checks_fail_on_a_hadolint_warning(tmp_path: Path) -> None:
    root = copy_of_the_checked_files(tmp_path)
    dockerfile = root / "Dockerfile.gateway"
    # An unpinned pip install is a warning (DL3013), not an error: warnings must fail too.
    dockerfile.write_text(dockerfile.read_text() + "\nRUN pip install --no-cache-dir flask\n")
    result = run_checks(root)
    assert result.returncode != 0
    assert "DL3013" in result.stdout + result.stderr
    assert "all checks passed" not in result.stdout


def test_checks_fail_when_compose_needs_a_variable_the_example_lacks(tmp_path: Path) -> None:
    root = copy_of_the_checked_files(tmp_path)
    example = root / ".env.example"
    lines = example.read_text().splitlines()
    example.write_text("\n".join(line for line in lines if not line.startswith("REDIS_PASSWORD=")))
    result = run_checks(root)
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stdout + result.stderr


def test_all_checks_pass_as_a_user_who_is_not_root() -> None:
    # CircleCI runs them as a non-root user: nginx -t must not need root's folders or ports.
    runuser, system_python = shutil.which("runuser"), Path("/usr/bin/python3.11")
    if os.geteuid() != 0:
        pytest.skip("needs root to run the checks as `nobody` (runuser)")
    if runuser is None or not system_python.exists():
        pytest.skip("needs runuser and /usr/bin/python3.11 to run the checks as `nobody`")
    # The venv's interpreter links into /root, which `nobody` cannot enter: the system's
    # Python 3.11 runs check-jsonschema from the venv's site-packages instead.
    folder = Path(tempfile.mkdtemp(prefix="check-config-"))
    try:
        folder.chmod(0o755)
        wrapper = folder / "python"
        site_packages = ROOT / ".venv" / "lib" / "python3.11" / "site-packages"
        wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{site_packages}" exec {system_python} "$@"\n')
        wrapper.chmod(0o755)
        result = subprocess.run(
            [
                runuser,
                *("-u", "nobody", "--", "env", f"CHECK_CONFIG_PYTHON={wrapper}"),
                f"PATH={ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
                *("bash", str(ROOT / "scripts" / "check-config.sh")),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=folder,
        )
    finally:
        shutil.rmtree(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nginx -t: deploy/nginx/ (as nobody)" in result.stdout
    assert "check-config: all checks passed" in result.stdout
