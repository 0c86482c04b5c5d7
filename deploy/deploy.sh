#!/usr/bin/env bash
# Deploy one release on the VM: deploy/deploy.sh SHA MODEL_VERSION
#
# A release is code and model together: the commit SHA (its SHA-tagged images and compose
# file) and a registry version number, models:/catdog/MODEL_VERSION, which CI resolved from
# the champion alias once, before the gate (deploy/resolve-model.sh). Workers load exactly
# that version, and rollback.sh restores the previous release's code and model.
#
# CI ships docker-compose.yml and deploy/ of the commit to $DEPLOY_ROOT/releases/SHA first,
# then runs this script from there:
#   1. preflight: everything the release and its checks need that is not in the release
#      (the env file, the TLS certificate, the smoke photos, the evaluation photos, the model
#      version in the registry, every image). A failure here has changed nothing.
#   2. record the running release as `previous` (from here on a failure is rolled back)
#   3. switch: `docker compose up -d` recreates only the containers whose definition changed
#   4. wait until /readyz answers 200 through the proxy
# Idempotent: deploying the release that already runs re-applies it and keeps `previous`.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sha="${1:-}"
version="${2:-}"
if ! valid_sha "$sha" || ! valid_version "$version"; then
  die "usage: deploy.sh SHA MODEL_VERSION (a commit SHA in lower-case hex, a registry version number)"
fi
take_lock

release="$sha $version"
current="$(read_state current)"
log "deploying $sha with models:/$MODEL_NAME/$version (running now: ${current:-nothing})"

# 1. Preflight.
preflight() {
  [ -f "$(release_dir "$sha")/docker-compose.yml" ] || die "release $sha not shipped to $(release_dir "$sha")"
  [ -f "$ENV_FILE" ] || die "no env file at $ENV_FILE (copy .env.example there and fill it in)"
  local certs smoke_dir
  certs="$(tls_dir)"
  if [ ! -s "$certs/fullchain.pem" ] || [ ! -s "$certs/privkey.pem" ]; then
    die "no TLS certificate in $certs: run deploy/tls.sh (self-signed, or letsencrypt DOMAIN EMAIL)"
  fi
  smoke_dir="$DEPLOY_ROOT/smoke"
  if [ ! -s "$smoke_dir/cat.jpg" ] || [ ! -s "$smoke_dir/dog.jpg" ]; then
    die "no smoke photos: put a clear cat.jpg and dog.jpg in $smoke_dir"
  fi
  require_eval_photos
  model_version_exists "$version" ||
    die "models:/$MODEL_NAME/$version is not in the registry at $(mlflow_url)"
  pull_images "$sha"
}
preflight
log "preflight passed"

# 2. Record, before touching containers.
if [ "$current" != "$release" ]; then
  write_state previous "$current"
  write_state current "$release"
fi
record "deploy $sha model=$version previous=${current:-none}"

# 3. Switch. --no-build: the VM runs published images only.
switch "$sha" "$version"

# 4. Ready: Redis answers and every queue has a worker with its model loaded.
wait_ready || die "release $sha with model $version did not become ready"

# 5. Tidy: keep the newest KEEP_RELEASES releases (always this one and `previous`), and
# delete the SHA-tagged images of the others; a worker image is ~2 GB.
prune_releases "$sha" "$(read_state previous | cut -d' ' -f1)"

log "deployed $sha with models:/$MODEL_NAME/$version"
