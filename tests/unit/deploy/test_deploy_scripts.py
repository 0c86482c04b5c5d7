"""The deploy scripts, run for real against fakes: a `docker` on PATH that logs its arguments
with the release it was given (IMAGE_TAG, CATDOG_MODEL_URI, DEPLOY_CONFIG_DIR), answers
`compose config` with YAML as compose v1 or v2 prints it and keeps a small table of
containers (so rolling a service can be followed), a `curl` that answers /readyz and MLflow's
registry API as told, and a stub HTTP API for the smoke test. Proves that deploy.sh checks
everything it needs before touching anything, records the previous release (code and model
version), rolls the gateway and the realtime worker, that rollback.sh goes back to the
previous release's compose file, images and model, that a failed pull touches nothing, and
that the smoke test fails whenever the service answers wrongly."""

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
import yaml

from tests.images import smoke_photos

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
SCRIPTS = [
    *sorted(DEPLOY.glob("*.sh")),
    ROOT / "scripts" / "system-deps.sh",
    ROOT / "scripts" / "check-config.sh",
]
OLD, NEW, NEWER = "a" * 40, "b" * 40, "c" * 40
ROLLED = ("worker-realtime", "gateway")  # the services deploy/lib.sh rolls, in that order

FAKE_DOCKER = r"""#!/usr/bin/env bash
# Logs every call with the release variables it saw. `compose ... config` prints the
# release's services as compose does (FAKE_COMPOSE=v1: lists not indented, as PyYAML writes
# them; v2, the default: indented, as Go's yaml writes them). $FAKE_STATE/containers is the
# engine's table, one line per container: ID SERVICE CONFIG-HASH.
echo "IMAGE_TAG=${IMAGE_TAG:-} CATDOG_MODEL_URI=${CATDOG_MODEL_URI:-}" \
  "DEPLOY_CONFIG_DIR=${DEPLOY_CONFIG_DIR:-} docker $*" >>"$FAKE_LOG"
table="$FAKE_STATE/containers"
mkdir -p "$FAKE_STATE" && touch "$table"
last="${*: -1}"
hash_of() { echo "hash-$1-${IMAGE_TAG:-}"; }
start() {
  local n
  n=$(($(cat "$FAKE_STATE/next" 2>/dev/null || echo 0) + 1))
  echo "$n" >"$FAKE_STATE/next"
  echo "c$n-$1 $1 $(hash_of "$1")" >>"$table"
}
services_yaml() {
  local item="      -" t="$IMAGE_TAG"
  if [ "${FAKE_COMPOSE:-v2}" = v1 ]; then item="    -"; fi
  cat <<YAML
name: catdog
networks:
  default:
    ipam:
      config:
${item} subnet: 172.28.0.0/24
services:
  evaluate:
    command:
${item} python
    image: ns/catdog-worker:$t
    profiles:
${item} tools
    volumes:
${item} /opt/catdog/eval-data:/eval-data:ro
  gateway:
    image: ns/catdog-gateway:$t
  redis:
    image: redis:7.4-alpine
  worker:
    image: ns/catdog-worker:$t
  worker-gpu:
    deploy:
      resources:
        reservations:
          devices:
${item}     capabilities:
${item}       - gpu
    image: "ns/catdog-worker:$t-gpu"
    profiles:
${item} gpu
    restart: unless-stopped
  worker-realtime:
    image: ns/catdog-worker:$t
volumes:
  redis-data: {}
YAML
}
case "$*" in
  compose\ *" config")
    services_yaml ;;
  compose\ *" config --hash="*)
    echo "${last#--hash=} $(hash_of "${last#--hash=}")" ;;
  compose\ *" ps -q "*)
    awk -v s="$last" '$2 == s { print $1 }' "$table" ;;
  compose\ *" up -d --no-deps --no-recreate --no-build --scale "*)
    start "$last" ;;
  compose\ *" up -d --no-build --remove-orphans")
    # Recreates every container whose definition changed (here: the rolled services).
    for service in worker-realtime gateway; do
      if ! awk -v s="$service" -v h="$(hash_of "$service")" '$2 == s && $3 == h { ok = 1 } END { exit !ok }' "$table"; then
        awk -v s="$service" '$2 != s' "$table" >"$table.new" && mv "$table.new" "$table"
        start "$service"
      fi
    done ;;
  "inspect --format "*config-hash*)
    awk -v id="$last" '$1 == id { print $3 }' "$table" ;;
  "inspect --format "*Health*)
    echo "${FAKE_HEALTH:-healthy}" ;;
  "rm "*)
    for id in "${@:2}"; do awk -v id="$id" '$1 != id' "$table" >"$table.new" && mv "$table.new" "$table"; done ;;
  "image inspect "*|"pull "*)
    # FAKE_MISSING_IMAGE is neither on this host nor in the registry.
    if [ -n "${FAKE_MISSING_IMAGE:-}" ] && [[ "$*" == *"$FAKE_MISSING_IMAGE"* ]]; then exit 1; fi
    # FAKE_LOCAL_IMAGES=no: nothing pulled yet, so inspect fails until a pull.
    if [[ "$*" == "image inspect "* ]] && [ "${FAKE_LOCAL_IMAGES:-yes}" = no ]; then exit 1; fi ;;
esac
exit 0
"""

FAKE_CURL = r"""#!/usr/bin/env bash
# The gateway's /readyz through the proxy (FAKE_READYZ: 200, another status, or down), and
# MLflow's registry: FAKE_REGISTRY_VERSIONS exist, FAKE_CHAMPION is what @champion names.
echo "curl $*" >>"$FAKE_LOG"
call="$*"
registry_down() {
  if [ -n "${FAKE_REGISTRY_DOWN:-}" ]; then
    echo "curl: (7) Failed to connect to 127.0.0.1 port 5000" >&2
    exit 7
  fi
}
case "$*" in
  *"/readyz"*)
    case "${FAKE_READYZ:-200}" in
      down) echo "curl: (7) Failed to connect to 127.0.0.1" >&2; exit 7 ;;
      200) printf '{"status": "ready"} (HTTP 200)' ;;
      *) printf '{"status": "not ready"} (HTTP %s)' "$FAKE_READYZ" ;;
    esac ;;
  *"/api/2.0/mlflow/model-versions/get "*)
    registry_down
    if [[ " ${FAKE_REGISTRY_VERSIONS:-1 2 3 4 5} " == *" ${call##*version=} "* ]]; then exit 0; fi
    echo "curl: (22) The requested URL returned error: 404" >&2
    exit 22 ;;
  *"/api/2.0/mlflow/registered-models/alias "*)
    registry_down
    alias="${call##*alias=}"
    if [ -n "${FAKE_CHAMPION:-}" ] && [ "$alias" = champion ]; then
      printf '{"model_version": {"name": "catdog", "version": "%s", "aliases": ["champion"]}}' "$FAKE_CHAMPION"
    else
      printf '{"error_code": "INVALID_PARAMETER_VALUE", "message": "Registered model alias %s not found."}' "$alias"
    fi ;;
  *) echo "fake curl: unexpected call: $*" >&2; exit 99 ;;
esac
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
    state: Path

    def ship(self, sha: str, age_s: int = 0) -> Path:
        """What CI ships: the commit's docker-compose.yml and deploy/."""
        release = self.root / "releases" / sha
        release.mkdir(parents=True)
        shutil.copy(ROOT / "docker-compose.yml", release / "docker-compose.yml")
        shutil.copytree(DEPLOY, release / "deploy")
        if age_s:
            stamp = release.stat().st_mtime - age_s
            os.utime(release, (stamp, stamp))
        return release

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(DEPLOY / script), *args],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            timeout=30,
        )

    def read(self, name: str) -> str:
        path = self.root / name
        return path.read_text().strip() if path.exists() else ""

    def releases(self) -> tuple[str, str]:
        """(current, previous): "SHA N" each."""
        return self.read("current"), self.read("previous")

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def ups(self) -> list[str]:
        return [c for c in self.calls() if " up -d " in f"{c} "]

    def containers(self) -> list[tuple[str, str, str]]:
        """The fake engine's (id, service, config hash) of every container."""
        table = self.state / "containers"
        lines = table.read_text().splitlines() if table.exists() else []
        return [tuple(line.split()) for line in lines]  # type: ignore[misc]

    def set_env(self, **values: str) -> None:
        with (self.root / ".env").open("a") as env_file:
            env_file.writelines(f"{k}={v}\n" for k, v in values.items())


def release_prefix(vm: Vm, sha: str, version: str) -> str:
    """How the fake docker logs a compose call of that release."""
    return (
        f"IMAGE_TAG={sha} CATDOG_MODEL_URI=models:/catdog/{version} "
        f"DEPLOY_CONFIG_DIR={vm.root}/config docker compose --project-name catdog"
    )


@pytest.fixture
def vm(tmp_path: Path) -> Vm:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("curl", FAKE_CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    root = tmp_path / "opt-catdog"
    root.mkdir()
    (root / ".env").write_text(
        "HTTP_PORT=8080\nHTTPS_PORT=8443\nMLFLOW_PORT=5001\nREDIS_PASSWORD=x\nCOMPOSE_PROFILES=\n"
    )
    # What deploy.sh's preflight needs besides the release (vm-setup.sh and the operator
    # put them there): a TLS certificate, the smoke photos and the evaluation photos.
    for name in ("tls/fullchain.pem", "tls/privkey.pem", "smoke/cat.jpg", "smoke/dog.jpg"):
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text("x")
    (root / "eval-data" / "cat").mkdir(parents=True)
    (root / "eval-data" / "cat" / "1.jpg").write_bytes(b"x")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "DEPLOY_ROOT": str(root),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_STATE": str(tmp_path / "engine"),
        "READY_TIMEOUT_S": "0",
    }
    return Vm(root, tmp_path / "calls.log", env, tmp_path / "engine")


def test_deploy_pulls_the_exact_sha_and_records_the_previous_release(vm: Vm) -> None:
    vm.ship(OLD)
    vm.ship(NEW)
    assert vm.run("deploy.sh", OLD, "3").returncode == 0
    assert vm.releases() == (f"{OLD} 3", "")

    result = vm.run("deploy.sh", NEW, "4")
    assert result.returncode == 0, result.stderr
    assert vm.releases() == (f"{NEW} 4", f"{OLD} 3")
    up = vm.ups()[-1]
    assert up.startswith(release_prefix(vm, NEW, "4"))
    assert f"--env-file {vm.root}/.env -f {vm.root}/releases/{NEW}/docker-compose.yml up" in up
    assert up.endswith("up -d --no-build --remove-orphans")
    calls = vm.calls()
    assert any(c.endswith(f"docker image inspect ns/catdog-worker:{NEW}") for c in calls)
    # The model version was checked in the registry, and readiness over TLS, by status.
    assert (
        "curl -fsS -o /dev/null --max-time 10 -G http://127.0.0.1:5001/api/2.0/mlflow/"
        "model-versions/get --data-urlencode name=catdog --data-urlencode version=4"
    ) in calls
    assert "curl -ksS --max-time 5 -w  (HTTP %{http_code}) https://127.0.0.1:8443/readyz" in calls
    assert f"deploy {NEW} model=4 previous={OLD} 3" in vm.read("history.log")


def test_a_compose_override_file_of_the_vm_applies_to_every_release(vm: Vm) -> None:
    vm.ship(NEW)
    (vm.root / "docker-compose.override.yml").write_text("services: {}\n")
    assert vm.run("deploy.sh", NEW, "4").returncode == 0
    release_file = f"-f {vm.root}/releases/{NEW}/docker-compose.yml"
    assert f"{release_file} -f {vm.root}/docker-compose.override.yml up -d" in vm.ups()[-1]


@pytest.mark.parametrize("compose_version", ["v1", "v2"])
def test_deploy_pulls_only_the_images_the_host_lacks(vm: Vm, compose_version: str) -> None:
    vm.ship(NEW)
    result = vm.run("deploy.sh", NEW, "4", FAKE_LOCAL_IMAGES="no", FAKE_COMPOSE=compose_version)
    assert result.returncode == 0, result.stderr
    pulls = [c.split(" docker ")[1] for c in vm.calls() if " docker pull " in c]
    # Not the GPU worker's image: its profile is not active on this VM; the evaluation's is
    # (profile tools, which evaluate.sh uses).
    assert pulls == [
        f"pull --quiet ns/catdog-gateway:{NEW}",
        f"pull --quiet ns/catdog-worker:{NEW}",
        "pull --quiet redis:7.4-alpine",
    ]
    vm.log.unlink()
    assert vm.run("deploy.sh", NEW, "4", FAKE_COMPOSE=compose_version).returncode == 0
    assert not [c for c in vm.calls() if " docker pull " in c]


@pytest.mark.parametrize("compose_version", ["v1", "v2"])
def test_a_gpu_vm_pulls_the_gpu_workers_image_too(vm: Vm, compose_version: str) -> None:
    vm.ship(NEW)
    vm.set_env(COMPOSE_PROFILES="gpu")
    result = vm.run("deploy.sh", NEW, "4", FAKE_LOCAL_IMAGES="no", FAKE_COMPOSE=compose_version)
    assert result.returncode == 0, result.stderr
    pulls = [c.split(" docker ")[1] for c in vm.calls() if " docker pull " in c]
    assert f"pull --quiet ns/catdog-worker:{NEW}-gpu" in pulls
    assert len(pulls) == 4


def test_redeploying_the_running_release_keeps_the_previous_one(vm: Vm) -> None:
    vm.ship(OLD)
    vm.ship(NEW)
    vm.run("deploy.sh", OLD, "3")
    vm.run("deploy.sh", NEW, "4")
    assert vm.run("deploy.sh", NEW, "4").returncode == 0
    assert vm.releases() == (f"{NEW} 4", f"{OLD} 3")


def test_a_new_model_version_alone_is_a_new_release(vm: Vm) -> None:
    # The champion changed, the code did not: the workers must load the new version, and
    # rollback.sh must be able to go back to the old one.
    vm.ship(NEW)
    vm.run("deploy.sh", NEW, "4")
    assert vm.run("deploy.sh", NEW, "5").returncode == 0
    assert vm.releases() == (f"{NEW} 5", f"{NEW} 4")
    assert vm.ups()[-1].startswith(release_prefix(vm, NEW, "5"))


def test_rollback_returns_to_the_previous_release_with_its_own_compose_file(vm: Vm) -> None:
    vm.ship(OLD)
    vm.ship(NEW)
    vm.run("deploy.sh", OLD, "3")
    # The new release never becomes ready (curl itself succeeds: the status says 503)...
    failed = vm.run("deploy.sh", NEW, "4", FAKE_READYZ="503")
    assert failed.returncode != 0
    assert "did not become ready" in failed.stderr
    assert "(HTTP 503)" in failed.stdout
    assert vm.read("current") == f"{NEW} 4"

    # ...and CI's on_fail step rolls back to the release recorded before it.
    result = vm.run("rollback.sh", "--from", NEW, "4")
    assert result.returncode == 0, result.stderr
    assert vm.releases() == (f"{OLD} 3", "")  # a second rollback will not flip back to NEW
    up = vm.ups()[-1]
    assert up.startswith(release_prefix(vm, OLD, "3"))
    assert f"-f {vm.root}/releases/{OLD}/docker-compose.yml" in up
    assert f"rollback {OLD} model=3 from={NEW} 4" in vm.read("history.log")


def test_rollback_restores_the_previous_releases_model_version(vm: Vm) -> None:
    vm.ship(NEW)
    vm.run("deploy.sh", NEW, "4")
    vm.run("deploy.sh", NEW, "5")
    result = vm.run("rollback.sh")
    assert result.returncode == 0, result.stderr
    assert vm.releases() == (f"{NEW} 4", "")
    assert "CATDOG_MODEL_URI=models:/catdog/4 " in vm.ups()[-1]
    assert "models:/catdog/4" in result.stdout


def test_rollback_from_a_release_that_does_not_run_changes_nothing(vm: Vm) -> None:
    # CI passes the release it tried: the same code with another model is another release.
    vm.ship(NEW)
    vm.run("deploy.sh", NEW, "4")
    ups_before = len(vm.ups())
    result = vm.run("rollback.sh", "--from", NEW, "5")
    assert result.returncode == 0, result.stderr
    assert "nothing to roll back" in result.stdout
    assert (vm.read("current"), len(vm.ups())) == (f"{NEW} 4", ups_before)


def test_a_failed_pull_changes_nothing_and_needs_no_rollback(vm: Vm) -> None:
    vm.ship(OLD)
    vm.ship(NEW)
    vm.run("deploy.sh", OLD, "3")
    ups_before = len(vm.ups())
    result = vm.run("deploy.sh", NEW, "4", FAKE_MISSING_IMAGE=f"catdog-gateway:{NEW}")
    assert result.returncode != 0
    assert f"image ns/catdog-gateway:{NEW} could not be pulled" in result.stderr
    assert (vm.read("current"), len(vm.ups())) == (f"{OLD} 3", ups_before)

    rollback = vm.run("rollback.sh", "--from", NEW, "4")
    assert rollback.returncode == 0
    assert "nothing to roll back" in rollback.stdout
    assert (vm.read("current"), len(vm.ups())) == (f"{OLD} 3", ups_before)


def _remove(vm: Vm, name: str) -> None:
    path = vm.root / name
    shutil.rmtree(path) if path.is_dir() else path.unlink()


PREFLIGHT_FAILURES = {
    "no TLS key": (lambda vm: _remove(vm, "tls/privkey.pem"), {}, "no TLS certificate in"),
    "empty TLS certificate": (
        lambda vm: (vm.root / "tls" / "fullchain.pem").write_text(""),
        {},
        "no TLS certificate in",
    ),
    "no smoke photo": (lambda vm: _remove(vm, "smoke/dog.jpg"), {}, "no smoke photos"),
    "no evaluation photos": (lambda vm: _remove(vm, "eval-data"), {}, "no labelled photos"),
    "model version not in the registry": (
        lambda vm: None,
        {"FAKE_REGISTRY_VERSIONS": "1 2 3"},
        "models:/catdog/4 is not in the registry at http://127.0.0.1:5001",
    ),
    "registry down": (
        lambda vm: None,
        {"FAKE_REGISTRY_DOWN": "1"},
        "models:/catdog/4 is not in the registry",
    ),
}


@pytest.mark.parametrize("missing", sorted(PREFLIGHT_FAILURES))
def test_deploy_refuses_when_a_preflight_item_is_missing_and_changes_nothing(
    vm: Vm, missing: str
) -> None:
    prepare, env, complaint = PREFLIGHT_FAILURES[missing]
    vm.ship(OLD)
    vm.ship(NEW)
    assert vm.run("deploy.sh", OLD, "3").returncode == 0
    history = vm.read("history.log")
    ups_before, calls_before = len(vm.ups()), len(vm.calls())
    prepare(vm)
    result = vm.run("deploy.sh", NEW, "4", **env)
    assert result.returncode != 0
    assert complaint in result.stderr
    assert "preflight passed" not in result.stdout
    assert vm.releases() == (f"{OLD} 3", "")
    assert vm.read("history.log") == history
    assert len(vm.ups()) == ups_before
    new_calls = vm.calls()[calls_before:]
    assert not [c for c in new_calls if " docker " in c and "pull" in c]


def test_deploy_reads_the_tls_folder_from_the_env_file(vm: Vm, tmp_path: Path) -> None:
    tls = tmp_path / "elsewhere"
    shutil.move(vm.root / "tls", tls)
    vm.ship(NEW)
    refused = vm.run("deploy.sh", NEW, "4")
    assert refused.returncode != 0
    assert f"no TLS certificate in {vm.root}/tls" in refused.stderr
    vm.set_env(TLS_DIR=str(tls))
    result = vm.run("deploy.sh", NEW, "4")
    assert result.returncode == 0, result.stderr


def test_rollback_without_a_previous_release_fails_loudly(vm: Vm) -> None:
    vm.ship(OLD)
    vm.run("deploy.sh", OLD, "3")
    result = vm.run("rollback.sh")
    assert result.returncode != 0
    assert "no previous release recorded" in result.stderr


def test_manual_rollback_to_a_named_release(vm: Vm) -> None:
    for sha, version in ((OLD, "1"), (NEW, "2"), (NEWER, "3")):
        vm.ship(sha)
        vm.run("deploy.sh", sha, version)
    result = vm.run("rollback.sh", OLD, "1")
    assert result.returncode == 0, result.stderr
    assert vm.read("current") == f"{OLD} 1"
    assert vm.ups()[-1].startswith(release_prefix(vm, OLD, "1"))


@pytest.mark.parametrize("args", [(OLD,), (OLD, "latest"), ("--from", OLD), ("ABCDEF1", "1")])
def test_rollback_refuses_a_release_without_a_model_version(vm: Vm, args: tuple[str, ...]) -> None:
    vm.ship(OLD)
    result = vm.run("rollback.sh", *args)
    assert result.returncode != 0
    assert "usage: rollback.sh" in result.stderr
    assert vm.calls() == []


@pytest.mark.parametrize("sha", ["latest", "ABCDEF1", "", "a" * 41])
def test_deploy_refuses_anything_but_a_commit_sha(vm: Vm, sha: str) -> None:
    result = vm.run("deploy.sh", sha, "3")
    assert result.returncode != 0
    assert "usage: deploy.sh SHA MODEL_VERSION" in result.stderr
    assert vm.calls() == []


@pytest.mark.parametrize("version", ["", "0", "champion", "@champion", "1.2", "-1", "07"])
def test_deploy_refuses_anything_but_a_registry_version_number(vm: Vm, version: str) -> None:
    vm.ship(NEW)
    result = vm.run("deploy.sh", NEW, *([version] if version else []))
    assert result.returncode != 0
    assert "usage: deploy.sh SHA MODEL_VERSION" in result.stderr
    assert vm.calls() == []
    assert vm.releases() == ("", "")


def test_deploy_refuses_a_release_that_was_not_shipped(vm: Vm) -> None:
    result = vm.run("deploy.sh", NEW, "3")
    assert result.returncode != 0
    assert "not shipped" in result.stderr
    assert vm.calls() == []


def test_old_releases_and_their_images_are_pruned(vm: Vm) -> None:
    vm.ship(OLD, age_s=300)
    vm.ship(NEW, age_s=200)
    vm.ship(NEWER, age_s=100)
    for sha in (OLD, NEW, NEWER):
        assert vm.run("deploy.sh", sha, "3", KEEP_RELEASES="2").returncode == 0
    assert sorted(p.name for p in (vm.root / "releases").iterdir()) == [NEW, NEWER]
    assert f"docker image rm ns/catdog-worker:{OLD}" in vm.log.read_text()
    assert "docker image rm redis" not in vm.log.read_text()


# --- switching: rolled services and the configuration folder ------------------------------------


def test_the_gateway_and_realtime_worker_are_rolled_new_beside_old(vm: Vm) -> None:
    vm.ship(OLD)
    vm.ship(NEW)
    assert vm.run("deploy.sh", OLD, "3").returncode == 0
    assert not [c for c in vm.calls() if " --scale " in c]  # nothing ran yet: nothing to roll
    old = {service: cid for cid, service, _ in vm.containers()}
    vm.log.unlink()

    result = vm.run("deploy.sh", NEW, "4")
    assert result.returncode == 0, result.stderr
    calls = vm.calls()

    def index(fragment: str) -> int:
        (found,) = [i for i, c in enumerate(calls) if c.endswith(fragment)]
        return found

    bulk_up = index("up -d --no-build --remove-orphans")
    previous_stop = -1
    for service in ROLLED:
        started = index(f"up -d --no-deps --no-recreate --no-build --scale {service}=2 {service}")
        healthy = index(
            f"docker inspect --format {{{{.State.Health.Status}}}} {_new_id(vm, service)}"
        )
        stopped = index(f"docker stop {old[service]}")
        # The new one runs and is healthy before the old one stops, one service after the
        # other, and all of it before the rest of the stack is recreated.
        assert previous_stop < started < healthy < stopped < bulk_up, service
        assert calls[started].startswith(f"IMAGE_TAG={NEW} CATDOG_MODEL_URI=models:/catdog/4 ")
        previous_stop = stopped
    assert sorted(service for _, service, _ in vm.containers()) == sorted(ROLLED)
    assert all(h.endswith(NEW) for _, _, h in vm.containers())

    # The same release again: every definition is unchanged, nothing is rolled.
    vm.log.unlink()
    assert vm.run("deploy.sh", NEW, "4").returncode == 0
    assert not [c for c in vm.calls() if " --scale " in c or " docker stop " in c]


def _new_id(vm: Vm, service: str) -> str:
    (cid,) = [cid for cid, s, _ in vm.containers() if s == service]
    return cid


def test_a_rolled_container_that_is_unhealthy_never_replaces_the_old_one(vm: Vm) -> None:
    vm.ship(OLD)
    vm.ship(NEW)
    vm.run("deploy.sh", OLD, "3")
    before = vm.containers()
    result = vm.run("deploy.sh", NEW, "4", FAKE_HEALTH="unhealthy")
    assert result.returncode != 0
    assert "is unhealthy" in result.stdout
    assert not [c for c in vm.calls() if " docker stop " in c]
    assert set(before) <= set(vm.containers())  # the old ones still serve
    assert not [c for c in vm.ups() if c.startswith(f"IMAGE_TAG={NEW} ") and " --scale " not in c]
    assert vm.read("current") == f"{NEW} 4"  # switched: CI's rollback takes it from here


def test_the_configuration_folder_holds_what_compose_mounts_from_it(vm: Vm) -> None:
    vm.ship(NEW)
    assert vm.run("deploy.sh", NEW, "4").returncode == 0
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    prefix = "${DEPLOY_CONFIG_DIR:-./deploy}/"
    mounted = [
        volume.removeprefix(prefix).split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if volume.startswith(prefix)
    ]
    assert len(mounted) >= 5, mounted
    for item in mounted:
        copy, original = vm.root / "config" / item, DEPLOY / item
        assert copy.exists(), (
            f"compose mounts {item} from the configuration folder; deploy left none"
        )
        if original.is_file():
            assert copy.read_bytes() == original.read_bytes(), item
    assert not [c for c in vm.calls() if " restart " in c]  # a first copy restarts nothing


def test_a_release_that_changes_the_proxy_config_restarts_the_proxy_alone(vm: Vm) -> None:
    vm.ship(OLD)
    release = vm.ship(NEW)
    conf = release / "deploy" / "nginx" / "nginx.conf"
    conf.write_text(conf.read_text().replace("keepalive_timeout 30s;", "keepalive_timeout 20s;"))
    vm.run("deploy.sh", OLD, "3")
    assert vm.run("deploy.sh", OLD, "3").returncode == 0
    assert not [c for c in vm.calls() if " restart " in c]  # same files: nothing restarted

    result = vm.run("deploy.sh", NEW, "4")
    assert result.returncode == 0, result.stderr
    assert (vm.root / "config" / "nginx" / "nginx.conf").read_text() == conf.read_text()
    restarts = [c for c in vm.calls() if " restart " in c]
    assert len(restarts) == 1
    assert restarts[0].startswith(release_prefix(vm, NEW, "4"))
    assert restarts[0].endswith(" restart proxy")
    assert vm.calls().index(restarts[0]) > vm.calls().index(vm.ups()[-1])  # after the switch


def test_a_release_missing_a_config_folder_fails_and_keeps_the_running_copy(vm: Vm) -> None:
    vm.ship(OLD)
    release = vm.ship(NEW)
    vm.run("deploy.sh", OLD, "3")
    shutil.rmtree(release / "deploy" / "grafana")
    result = vm.run("deploy.sh", NEW, "4")
    assert result.returncode != 0
    dashboards = vm.root / "config" / "grafana" / "dashboards" / "catdog.json"
    assert dashboards.read_bytes() == (DEPLOY / "grafana/dashboards/catdog.json").read_bytes()
    assert not [c for c in vm.calls() if c.endswith("--remove-orphans") and f"={NEW} " in c]


# --- evaluate.sh, resolve-model.sh --------------------------------------------------------------


def test_evaluate_runs_the_client_in_the_running_release(vm: Vm) -> None:
    vm.ship(NEW)
    vm.run("deploy.sh", NEW, "4")
    result = vm.run("evaluate.sh", NEW)
    assert result.returncode == 0, result.stderr
    run = vm.calls()[-1]
    assert run.startswith(release_prefix(vm, NEW, "4"))
    assert run.endswith("--profile tools run --rm --no-deps evaluate")


def test_evaluate_refuses_a_release_that_does_not_run(vm: Vm) -> None:
    vm.ship(OLD)
    vm.ship(NEW)
    vm.run("deploy.sh", NEW, "4")
    calls_before = len(vm.calls())
    result = vm.run("evaluate.sh", OLD)
    assert result.returncode != 0
    assert "is not the one running" in result.stderr
    assert len(vm.calls()) == calls_before


def test_evaluate_refuses_an_empty_data_folder(vm: Vm) -> None:
    vm.ship(NEW)
    vm.run("deploy.sh", NEW, "4")
    shutil.rmtree(vm.root / "eval-data")
    (vm.root / "eval-data").mkdir()
    result = vm.run("evaluate.sh", NEW)
    assert result.returncode != 0
    assert "no labelled photos" in result.stderr


def test_resolve_model_prints_the_champions_version_number(vm: Vm) -> None:
    result = vm.run("resolve-model.sh", FAKE_CHAMPION="7")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "7\n"
    assert vm.calls() == [
        "curl -sS --max-time 10 -G http://127.0.0.1:5001/api/2.0/mlflow/registered-models/alias"
        " --data-urlencode name=catdog --data-urlencode alias=champion"
    ]


def test_resolve_model_exits_3_when_the_registry_has_no_such_alias(vm: Vm) -> None:
    result = vm.run("resolve-model.sh")
    assert result.returncode == 3
    assert result.stdout == ""
    assert (
        "no catdog@champion in the registry at http://127.0.0.1:5001: "
        "Registered model alias champion not found."
    ) in result.stderr
    other = vm.run("resolve-model.sh", "challenger", FAKE_CHAMPION="7")
    assert other.returncode == 3
    assert "alias=challenger" in vm.calls()[-1]


def test_resolve_model_fails_when_the_registry_does_not_answer(vm: Vm) -> None:
    result = vm.run("resolve-model.sh", FAKE_REGISTRY_DOWN="1")
    assert result.returncode not in (0, 3)
    assert "does not answer" in result.stderr
    assert result.stdout == ""


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
    # No release exists yet: the variables every release sets are filled with "none".
    assert vm.calls() == [
        "IMAGE_TAG=none CATDOG_MODEL_URI=none DEPLOY_CONFIG_DIR= docker compose --project-name"
        f" catdog --env-file {vm.root}/.env -f {compose_file} up -d --wait mlflow"
    ]
