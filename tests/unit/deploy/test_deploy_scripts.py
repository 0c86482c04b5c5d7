"""The deploy scripts, run for real against fakes: a `docker` on PATH that logs its arguments
(and can be told to fail), a `curl` that answers /readyz as told, and a stub HTTP API for the
smoke test. Proves that deploy.sh records the previous SHA, that rollback.sh goes back to it
with that release's compose file and images, that a failed pull touches nothing, and that
the smoke test fails whenever the service answers wrongly."""

import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.images import smoke_photos

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
SCRIPTS = [
    *sorted(DEPLOY.glob("*.sh")),
    ROOT / "scripts" / "system-deps.sh",
    ROOT / "scripts" / "check-config.sh",
]
OLD, NEW, NEWER = "a" * 40, "b" * 40, "c" * 40

FAKE_DOCKER = r"""#!/usr/bin/env bash
# Logs every call with the IMAGE_TAG it saw; answers `config --images` like compose would.
echo "IMAGE_TAG=${IMAGE_TAG:-} docker $*" >> "$FAKE_LOG"
case "$*" in
  *" config --images")
    printf 'ns/catdog-gateway:%s\nns/catdog-worker:%s\nredis:7.4-alpine\n' "$IMAGE_TAG" "$IMAGE_TAG" ;;
  "image inspect "*|"pull "*)
    # FAKE_MISSING_IMAGE is neither on this host nor in the registry.
    if [ -n "${FAKE_MISSING_IMAGE:-}" ] && [[ "$*" == *"$FAKE_MISSING_IMAGE"* ]]; then exit 1; fi
    # FAKE_LOCAL_IMAGES=no: nothing pulled yet, so inspect fails until a pull.
    if [[ "$*" == "image inspect "* ]] && [ "${FAKE_LOCAL_IMAGES:-yes}" = no ]; then exit 1; fi ;;
esac
exit 0
"""

FAKE_CURL = r"""#!/usr/bin/env bash
echo "curl $*" >> "$FAKE_LOG"
exit "${FAKE_CURL_EXIT:-0}"
"""


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: run `make setup` (scripts/system-deps.sh)"
    result = subprocess.run(
        [shellcheck, "--external-sources", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout


def test_scripts_never_swallow_failures() -> None:
    for script in SCRIPTS:
        text = script.read_text()
        assert "|| true" not in text, script.name
        assert "set -euo pipefail" in text or script.name == "lib.sh", script.name


# --- deploy.sh, rollback.sh, evaluate.sh against a fake docker ---------------------------------


@dataclass
class Vm:
    root: Path
    log: Path
    env: dict[str, str]

    def ship(self, sha: str, age_s: int = 0) -> None:
        release = self.root / "releases" / sha
        (release / "deploy").mkdir(parents=True)
        shutil.copy(ROOT / "docker-compose.yml", release / "docker-compose.yml")
        for script in DEPLOY.glob("*.sh"):
            shutil.copy(script, release / "deploy" / script.name)
        if age_s:
            stamp = release.stat().st_mtime - age_s
            os.utime(release, (stamp, stamp))

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(DEPLOY / script), *args],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            timeout=30,
        )

    def state(self, name: str) -> str:
        path = self.root / name
        return path.read_text().strip() if path.exists() else ""

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def ups(self) -> list[str]:
        return [c for c in self.calls() if " up -d " in f"{c} "]


@pytest.fixture
def vm(tmp_path: Path) -> Vm:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("curl", FAKE_CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    root = tmp_path / "opt-catdog"
    root.mkdir()
    (root / ".env").write_text("HTTP_PORT=8080\nREDIS_PASSWORD=x\n")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "DEPLOY_ROOT": str(root),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "READY_TIMEOUT_S": "0",
    }
    return Vm(root, tmp_path / "calls.log", env)


def test_deploy_pulls_the_exact_sha_and_records_the_previous_one(vm: Vm) -> None:
    vm.ship(OLD)
    vm.ship(NEW)
    assert vm.run("deploy.sh", OLD).returncode == 0
    assert (vm.state("current"), vm.state("previous")) == (OLD, "")

    result = vm.run("deploy.sh", NEW)
    assert result.returncode == 0, result.stderr
    assert (vm.state("current"), vm.state("previous")) == (NEW, OLD)
    up = vm.ups()[-1]
    assert up.startswith(f"IMAGE_TAG={NEW} docker compose --project-name catdog")
    assert f"--env-file {vm.root}/.env -f {vm.root}/releases/{NEW}/docker-compose.yml" in up
    assert up.endswith("up -d --no-build --remove-orphans")
    assert f"docker image inspect ns/catdog-worker:{NEW}" in vm.log.read_text()
    assert "curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:8080/readyz" in vm.calls()


def test_deploy_pulls_only_the_images_the_host_lacks(vm: Vm) -> None:
    vm.ship(NEW)
    assert vm.run("deploy.sh", NEW, FAKE_LOCAL_IMAGES="no").returncode == 0
    pulls = [c.split(" docker ")[1] for c in vm.calls() if " docker pull " in c]
    assert pulls == [
        f"pull --quiet ns/catdog-gateway:{NEW}",
        f"pull --quiet ns/catdog-worker:{NEW}",
        "pull --quiet redis:7.4-alpine",
    ]
    vm.log.unlink()
    assert vm.run("deploy.sh", NEW).returncode == 0
    assert not [c for c in vm.calls() if " docker pull " in c]


def test_redeploying_the_running_sha_keeps_the_previous_one(vm: Vm) -> None:
    vm.ship(OLD)
    vm.ship(NEW)
    vm.run("deploy.sh", OLD)
    vm.run("deploy.sh", NEW)
    assert vm.run("deploy.sh", NEW).returncode == 0
    assert (vm.state("current"), vm.state("previous")) == (NEW, OLD)


def test_rollback_returns_to_the_previous_sha_with_its_own_compose_file(vm: Vm) -> None:
    vm.ship(OLD)
    vm.ship(NEW)
    vm.run("deploy.sh", OLD)
    # The new release never becomes ready: deploy fails after switching...
    failed = vm.run("deploy.sh", NEW, FAKE_CURL_EXIT="7")
    assert failed.returncode != 0
    assert "did not become ready" in failed.stderr
    assert vm.state("current") == NEW

    # ...and CI's on_fail step rolls back to the SHA recorded before it.
    result = vm.run("rollback.sh", "--from", NEW)
    assert result.returncode == 0, result.stderr
    assert vm.state("current") == OLD
    assert vm.state("previous") == ""  # a second rollback will not flip back to NEW
    up = vm.ups()[-1]
    assert up.startswith(f"IMAGE_TAG={OLD} ")
    assert f"-f {vm.root}/releases/{OLD}/docker-compose.yml" in up
    assert f"rollback {OLD} from={NEW}" in (vm.root / "history.log").read_text()


def test_a_failed_pull_changes_nothing_and_needs_no_rollback(vm: Vm) -> None:
    vm.ship(OLD)
    vm.ship(NEW)
    vm.run("deploy.sh", OLD)
    ups_before = len(vm.ups())
    result = vm.run("deploy.sh", NEW, FAKE_MISSING_IMAGE=f"catdog-gateway:{NEW}")
    assert result.returncode != 0
    assert f"image ns/catdog-gateway:{NEW} could not be pulled" in result.stderr
    assert (vm.state("current"), len(vm.ups())) == (OLD, ups_before)

    rollback = vm.run("rollback.sh", "--from", NEW)
    assert rollback.returncode == 0
    assert "nothing to roll back" in rollback.stdout
    assert (vm.state("current"), len(vm.ups())) == (OLD, ups_before)


def test_rollback_without_a_previous_release_fails_loudly(vm: Vm) -> None:
    vm.ship(OLD)
    vm.run("deploy.sh", OLD)
    result = vm.run("rollback.sh")
    assert result.returncode != 0
    assert "no previous release recorded" in result.stderr


def test_manual_rollback_to_a_named_release(vm: Vm) -> None:
    for sha in (OLD, NEW, NEWER):
        vm.ship(sha)
        vm.run("deploy.sh", sha)
    result = vm.run("rollback.sh", OLD)
    assert result.returncode == 0, result.stderr
    assert vm.state("current") == OLD
    assert vm.ups()[-1].startswith(f"IMAGE_TAG={OLD} ")


@pytest.mark.parametrize("sha", ["latest", "ABCDEF1", "", "a" * 41])
def test_deploy_refuses_anything_but_a_commit_sha(vm: Vm, sha: str) -> None:
    result = vm.run("deploy.sh", sha)
    assert result.returncode != 0
    assert "usage: deploy.sh SHA" in result.stderr
    assert vm.calls() == []


def test_deploy_refuses_a_release_that_was_not_shipped(vm: Vm) -> None:
    result = vm.run("deploy.sh", NEW)
    assert result.returncode != 0
    assert "not shipped" in result.stderr
    assert vm.calls() == []


def test_old_releases_and_their_images_are_pruned(vm: Vm) -> None:
    vm.ship(OLD, age_s=300)
    vm.ship(NEW, age_s=200)
    vm.ship(NEWER, age_s=100)
    for sha in (OLD, NEW, NEWER):
        assert vm.run("deploy.sh", sha, KEEP_RELEASES="2").returncode == 0
    assert sorted(p.name for p in (vm.root / "releases").iterdir()) == [NEW, NEWER]
    assert f"docker image rm ns/catdog-worker:{OLD}" in vm.log.read_text()
    assert "docker image rm redis" not in vm.log.read_text()


def test_evaluate_runs_the_client_in_the_running_release(vm: Vm) -> None:
    vm.ship(NEW)
    vm.run("deploy.sh", NEW)
    data = vm.root / "eval-data"
    (data / "cat").mkdir(parents=True)
    (data / "cat" / "1.jpg").write_bytes(b"x")
    result = vm.run("evaluate.sh", NEW)
    assert result.returncode == 0, result.stderr
    run = vm.calls()[-1]
    assert run.startswith(f"IMAGE_TAG={NEW} docker compose")
    assert run.endswith("--profile tools run --rm --no-deps evaluate")


def test_evaluate_refuses_an_empty_data_folder(vm: Vm) -> None:
    vm.ship(NEW)
    vm.run("deploy.sh", NEW)
    (vm.root / "eval-data").mkdir()
    result = vm.run("evaluate.sh", NEW)
    assert result.returncode != 0
    assert "no labelled photos" in result.stderr


# --- smoke-test.sh against a stub API ----------------------------------------------------------

SMOKE_PHOTOS = smoke_photos(Path(tempfile.mkdtemp(prefix="smoke-photos-")))
CAT = (SMOKE_PHOTOS / "cat.jpg").read_bytes()
DOG = (SMOKE_PHOTOS / "dog.jpg").read_bytes()
CORRUPT = (DEPLOY / "smoke" / "corrupt.jpg").read_bytes()


def stub_handler(mode: str) -> type[BaseHTTPRequestHandler]:
    """A stand-in for the gateway: 'right', or one way of being wrong."""
    right = {"cat": "cat", "dog": "dog"}
    labels = {"cat": "dog", "dog": "cat"} if mode == "wrong_model" else right

    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 answers curl's `Expect: 100-continue` at once instead of after 1 s.
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/readyz":
                self.answer(503 if mode == "not_ready" else 200, {"status": "ready"})
            elif self.path == "/jobs/job-1":
                status = "failed" if mode == "job_fails" else "succeeded"
                items = [{"index": 0, "label": labels["cat"]}, {"index": 1, "label": labels["dog"]}]
                body = {"status": status, "done": 2, "failed": 0, "results": {"items": items}}
                self.answer(200, body)
            else:
                self.answer(404, {"detail": "not found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/jobs":
                self.answer(202, {"job_id": "job-1", "status": "queued"})
            elif self.path != "/predict":
                self.answer(404, {"detail": "not found"})
            elif CORRUPT in body:
                status = 200 if mode == "accepts_corrupt" else 422
                self.answer(status, {"label": "cat", "probability": 0.5})
            else:
                animal = "cat" if CAT in body else "dog" if DOG in body else "?"
                self.answer(200, {"label": labels[animal], "probability": 0.9})

    return Handler


@pytest.fixture
def stub_api(request: pytest.FixtureRequest) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), stub_handler(request.param))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def smoke(url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SMOKE_READY_TIMEOUT_S": "0",
        "SMOKE_JOB_TIMEOUT_S": "5",
        "SMOKE_PHOTOS_DIR": str(SMOKE_PHOTOS),
    }
    return subprocess.run(
        ["bash", str(DEPLOY / "smoke-test.sh"), url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize("stub_api", ["right"], indirect=True)
def test_smoke_test_passes_when_every_answer_is_right(stub_api: str) -> None:
    result = smoke(stub_api)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASS") == 5


@pytest.mark.parametrize(
    ("stub_api", "complaint"),
    [
        ("wrong_model", "cat.jpg -> dog, expected cat"),
        ("accepts_corrupt", "corrupt.jpg: status 200, expected 422"),
        ("job_fails", "ended failed"),
        ("not_ready", "GET /readyz answered 503"),
    ],
    indirect=["stub_api"],
)
def test_smoke_test_fails_when_an_answer_is_wrong(stub_api: str, complaint: str) -> None:
    result = smoke(stub_api)
    assert result.returncode == 1
    assert complaint in result.stderr
    assert "smoke test FAILED" in result.stderr


def test_smoke_test_fails_when_nothing_answers(tmp_path: Path) -> None:
    result = smoke("http://127.0.0.1:9")  # the discard port: connection refused
    assert result.returncode == 1
    assert "GET /readyz answered 000" in result.stderr


# --- vm-setup.sh: the deploy root and its env file ---------------------------------------------


def make_deploy_root(root: Path) -> subprocess.CompletedProcess[str]:
    script = f"""
        source {DEPLOY / "vm-setup.sh"}
        deploy_user="$(id -un)" namespace=myhub root={root}
        make_deploy_root
    """
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)


def env_values(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


def test_vm_setup_writes_an_env_file_with_fresh_secrets_once(tmp_path: Path) -> None:
    root = tmp_path / "catdog"
    result = make_deploy_root(root)
    assert result.returncode == 0, result.stderr
    env = env_values(root / ".env")
    assert (root / ".env").stat().st_mode & 0o777 == 0o600
    assert env["DOCKERHUB_NAMESPACE"] == "myhub"
    assert env["EVAL_DATA_DIR"] == str(root / "eval-data")
    example = env_values(ROOT / ".env.example")
    for secret in ("REDIS_PASSWORD", "CATDOG_CALLBACK_SECRET", "GRAFANA_ADMIN_PASSWORD"):
        assert env[secret] != example[secret] and len(env[secret]) >= 32, secret
        assert "change-me" not in env[secret]
    assert env["CATDOG_FLOWER_BASIC_AUTH"].startswith("admin:")
    assert env.keys() == example.keys()
    assert (root / "eval-data").stat().st_mode & 0o777 == 0o755

    # A second run keeps the secrets the stack already uses.
    assert make_deploy_root(root).returncode == 0
    assert env_values(root / ".env") == env


def test_vm_setup_starts_mlflow_alone_in_the_stacks_project(vm: Vm) -> None:
    script = f"""
        source {DEPLOY / "vm-setup.sh"}
        deploy_user="$(id -un)" namespace=myhub root={vm.root}
        start_mlflow
    """
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=vm.env)
    assert result.returncode == 0, result.stderr
    compose_file = vm.root / "bootstrap" / "docker-compose.yml"
    assert compose_file.read_text() == (ROOT / "docker-compose.yml").read_text()
    assert vm.calls() == [
        f"IMAGE_TAG= docker compose --project-name catdog --env-file {vm.root}/.env "
        f"-f {compose_file} up -d --wait mlflow"
    ]
