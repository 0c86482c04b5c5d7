#!/usr/bin/env bash
# `make test-containers`: the deployed form, built and run on this machine.
#
#   1. a container engine: the machine's Docker, or podman behind a Docker API socket
#      (tests/containers/engine.sh)
#   2. both images from the real Dockerfiles on a local Debian base, and stand-ins for the
#      third-party images that cannot be pulled (tests/containers/build.sh)
#   3. the real docker-compose.yml with tests/containers/compose.local.yml on top, started
#      by the real deploy/deploy.sh; a small model trained here, registered in the stack's
#      MLflow; deploy/smoke-test.sh through the proxy over TLS
#   4. a failed deploy (a release whose model answers wrongly) rolled back by
#      deploy/rollback.sh, with the requests that failed during each deploy counted
#   5. the restore drill: deploy/backup.sh, the volumes destroyed, deploy/restore.sh, the
#      same champion serving again
#
# Needs root (podman here runs containers as root) and `make setup`. Everything it starts is stopped at the end,
# by process id; KEEP=1 leaves the stack running for a look.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WORK="${WORK:-/tmp/catdog-containers}"
mkdir -p "$WORK"
say() { echo "[containers $(date -u +%H:%M:%S)] $*"; }
die() {
  echo "[containers] FAILED: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "run as root (podman here runs containers as root; sudo make test-containers)"

NAMESPACE=localhost/catdog
# The release under test: this commit (a dirty tree gets a suffix, so its images are never
# mistaken for the commit's).
TAG="$(git -C "$REPO" rev-parse HEAD)"

# shellcheck source=tests/containers/engine.sh
source "$HERE/engine.sh"
# shellcheck source=tests/containers/build.sh
source "$HERE/build.sh"

VM="$WORK/vm"                       # the harness's DEPLOY_ROOT: what /opt/catdog is on a VM
export DEPLOY_ROOT="$VM" HARNESS_DIR="$WORK/harness"
PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || die "no $PY: run 'make setup' first"
HTTPS_URL="https://localhost:18443"
SECOND_TAG="$(printf 'second release of %s' "$TAG" | sha1sum | cut -c1-40)"

compose_vm() {
  # shellcheck source=deploy/lib.sh
  (source "$REPO/deploy/lib.sh" && compose "$@")
}

# ship SHA: what CI's deploy job copies to the VM (the commit's compose file and deploy/).
ship() {
  mkdir -p "$VM/releases/$1"
  cp "$REPO/docker-compose.yml" "$VM/releases/$1/"
  cp -a "$REPO/deploy" "$VM/releases/$1/"
}

set_env() { sed -i "s|^$1=.*|$1=$2|" "$VM/.env"; }

# The harness VM: an env file with real secrets, the override, TLS, smoke and evaluation
# photos, and two releases shipped (this commit, and the same images under a second SHA, so
# a deploy between them replaces containers as a new commit would).
prepare_vm() {
  # Whatever an earlier run left behind (KEEP=1, or a run killed midway).
  local leftovers
  leftovers="$(docker ps -aq --filter label=com.docker.compose.project=catdog)"
  [ -z "$leftovers" ] || xargs docker rm -f <<<"$leftovers" >/dev/null
  leftovers="$(docker volume ls -q --filter label=com.docker.compose.project=catdog)"
  [ -z "$leftovers" ] || xargs docker volume rm <<<"$leftovers" >/dev/null
  docker network rm catdog_default >/dev/null 2>&1 || true
  rm -rf "$VM" "$HARNESS_DIR"
  mkdir -p "$VM/releases" "$HARNESS_DIR"
  install -m 0600 "$REPO/.env.example" "$VM/.env"
  set_env DOCKERHUB_NAMESPACE "$NAMESPACE"
  set_env REDIS_PASSWORD "$(openssl rand -hex 24)"
  set_env CATDOG_CALLBACK_SECRET "$(openssl rand -hex 32)"
  set_env CATDOG_FLOWER_BASIC_AUTH "admin:$(openssl rand -hex 16)"
  set_env GRAFANA_ADMIN_PASSWORD "$(openssl rand -hex 16)"
  set_env EVAL_DATA_DIR "$VM/eval-data"
  set_env HTTP_PORT 18080
  set_env HTTPS_PORT 18443
  set_env MLFLOW_PORT 15000
  set_env PROMETHEUS_PORT 19090
  set_env TLS_DIR "$VM/tls"
  set_env ACME_WEBROOT "$VM/acme"
  set_env REALTIME_THREADS 4
  set_env WORKER_CONCURRENCY 1
  if [ "$ENGINE" = podman ]; then
    cp "$HERE/compose.podman.yml" "$VM/docker-compose.override.yml"
    # podman's DNS for the compose network answers at the network's gateway.
    echo "resolver 172.28.0.1 valid=10s ipv6=off;" >"$HARNESS_DIR/resolver.conf"
  fi
  "$PY" -c "import sys; from pathlib import Path; from tests.images import smoke_photos; smoke_photos(Path(sys.argv[1]))" "$VM/smoke"
  mkdir -p "$VM/eval-data/cat" "$VM/eval-data/dog"
  "$PY" - "$VM" <<'PYTHON'
import shutil, sys
from pathlib import Path
from tests.smoke_model import training_photos
vm = Path(sys.argv[1])
for i, (photo, label) in enumerate(training_photos(vm / "smoke")):
    shutil.copy(photo, vm / "eval-data" / label / f"{i}.jpg")
PYTHON
  ship "$TAG"
  ship "$SECOND_TAG"
  docker tag "$NAMESPACE/catdog-gateway:$TAG" "$NAMESPACE/catdog-gateway:$SECOND_TAG"
  docker tag "$NAMESPACE/catdog-worker:$TAG" "$NAMESPACE/catdog-worker:$SECOND_TAG"
  docker tag "$NAMESPACE/catdog-worker:$TAG" "$NAMESPACE/catdog-worker:mlflow"
  bash "$VM/releases/$TAG/deploy/tls.sh" self-signed localhost
  export CURL_CA_BUNDLE="$VM/tls/fullchain.pem"
}

# What vm-setup.sh does before the first release: MLflow up, so a champion can be registered.
start_registry() {
  # No model version exists yet; 0 only fills the file's required variable.
  compose_vm "$TAG" 0 up -d mlflow redis
  for _ in $(seq 1 120); do
    curl -fs -o /dev/null http://127.0.0.1:15000/health && return
    sleep 1
  done
  die "MLflow did not answer on 127.0.0.1:15000"
}

# An operator's API key, made in Redis before the gateway starts (a production gateway with
# API keys on refuses to start without one).
make_api_key() {
  local redis_password key
  redis_password="$(sed -n 's/^REDIS_PASSWORD=//p' "$VM/.env")"
  key="$(compose_vm "$TAG" 1 --profile tools run --rm --no-deps \
    -e "CATDOG_REDIS_URL=redis://:$redis_password@redis:6379/0" evaluate \
    python -m client keys create --name ops 2>/dev/null | tail -n 1)"
  [ -n "$key" ] || die "no API key could be made"
  set_env OPS_API_KEY "$key"
  export CATDOG_API_KEY="$key"
}

smoke() { SMOKE_PHOTOS_DIR="$VM/smoke" bash "$REPO/deploy/smoke-test.sh" "$HTTPS_URL"; }

# traffic_start NAME / traffic_stop NAME: /predict one at a time through the proxy.
traffic_start() {
  (cd "$REPO" && exec "$PY" -m tests.containers.traffic "$HTTPS_URL" "$CATDOG_API_KEY" "$VM/smoke/cat.jpg" \
    "$CURL_CA_BUNDLE" "$WORK/traffic-$1.json") &
  echo $! >"$WORK/traffic.pid"
  sleep 2
}
traffic_stop() {
  kill -TERM "$(cat "$WORK/traffic.pid")"
  wait "$(cat "$WORK/traffic.pid")" 2>/dev/null || true
  rm -f "$WORK/traffic.pid"
  say "DOWNTIME $1: $(cat "$WORK/traffic-$1.json")"
}

cleanup() {
  local status=$?
  if [ -f "$WORK/traffic.pid" ]; then kill "$(cat "$WORK/traffic.pid")" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" != 1 ]; then
    if [ -f "$VM/current" ] || [ -d "$VM/releases/$TAG" ]; then
      compose_vm "$TAG" 1 --profile tools down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    engine_down
  fi
  exit "$status"
}

# run.sh [all | build | run]: build and run (default), only build, or run on images built before.
phase="${1:-all}"
say "engine: $ENGINE"
trap cleanup EXIT
engine_up
if [ "$phase" != run ]; then build_all; fi
if [ "$phase" = build ]; then exit 0; fi
cd "$REPO"
export PYTHONPATH="$REPO"

say "== the harness VM"
prepare_vm
start_registry

say "== first deploy, before any champion exists"
if bash "$VM/releases/$TAG/deploy/resolve-model.sh"; then
  die "resolve-model.sh found a champion in an empty registry"
fi
say "resolve-model.sh stopped the first deploy before switching (status 3), as it should"

say "== a small model trained here, registered in the stack's MLflow"
"$PY" -m tests.containers.models http://127.0.0.1:15000 "$VM/smoke" "$WORK/models" >"$WORK/versions" ||
  die "training or registering the harness's models failed"
read -r good_version bad_version < <(tail -n 1 "$WORK/versions")
version="$(bash "$VM/releases/$TAG/deploy/resolve-model.sh")"
[ "$version" = "$good_version" ] || die "the champion resolved to $version, expected $good_version"
say "champion: models:/catdog/$version (the swapped model is version $bad_version)"
make_api_key

say "== deploy $TAG with models:/catdog/$version"
started=$SECONDS
bash "$VM/releases/$TAG/deploy/deploy.sh" "$TAG" "$version"
say "first deploy took $((SECONDS - started))s"
smoke
bash "$VM/releases/$TAG/deploy/evaluate.sh" "$TAG"
"$PY" -m tests.containers.checks "$VM" "$HTTPS_URL"

say "== deploy a second commit (the containers are replaced) under traffic"
traffic_start code-deploy
bash "$VM/releases/$SECOND_TAG/deploy/deploy.sh" "$SECOND_TAG" "$version"
traffic_stop code-deploy
smoke

say "== a failed deploy: the same code with the swapped model; the smoke test fails"
bash "$VM/releases/$SECOND_TAG/deploy/deploy.sh" "$SECOND_TAG" "$bad_version"
if smoke; then die "the smoke test passed on the swapped model"; fi
say "smoke test failed on models:/catdog/$bad_version, as it should: rolling back"
traffic_start rollback
bash "$VM/releases/$SECOND_TAG/deploy/rollback.sh" --from "$SECOND_TAG" "$bad_version"
traffic_stop rollback
[ "$(cat "$VM/current")" = "$SECOND_TAG $version" ] || die "rollback left $(cat "$VM/current") running"
smoke
say "rolled back to $SECOND_TAG with models:/catdog/$version"

say "== the restore drill"
bash "$VM/releases/$SECOND_TAG/deploy/backup.sh" "$WORK/backup"
compose_vm "$SECOND_TAG" "$version" down -v
[ -z "$(docker volume ls -q --filter name=catdog_mlflow-data)" ] || die "the MLflow volume survived down -v"
say "volumes destroyed"
bash "$VM/releases/$SECOND_TAG/deploy/restore.sh" "$WORK/backup"
smoke
served="$(curl -fsS -H "X-API-Key: $CATDOG_API_KEY" -F "file=@$VM/smoke/cat.jpg" "$HTTPS_URL/predict" |
  "$PY" -c 'import json, sys; print(json.load(sys.stdin)["model"]["version"])')"
[ "$served" = "$version" ] || die "after the restore the stack serves model version $served, expected $version"
say "restore drill passed: the champion, models:/catdog/$version, serves again"

say "make test-containers: all checks passed"
