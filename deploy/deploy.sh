#!/usr/bin/env bash
# Deploy one release on the VM: deploy/deploy.sh SHA
#
# CI ships docker-compose.yml and deploy/ of the commit to $DEPLOY_ROOT/releases/SHA first,
# then runs this script from there. It pulls the exact SHA-tagged images (never :latest),
# records the SHA that was running as `previous` (rollback.sh goes back to it), starts the
# release with `docker compose up -d` and waits until /readyz answers 200.
# Idempotent: deploying the SHA that already runs re-applies it and keeps `previous`.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sha="${1:-}"
valid_sha "$sha" || die "usage: deploy.sh SHA (a commit SHA, lower-case hex)"
[ -f "$(release_dir "$sha")/docker-compose.yml" ] || die "release $sha not shipped to $(release_dir "$sha")"
[ -f "$ENV_FILE" ] || die "no env file at $ENV_FILE (copy .env.example there and fill it in)"
take_lock

current="$(read_state current)"
log "deploying $sha (running now: ${current:-nothing})"

# 1. Pull. Nothing that runs has changed yet, so a failure here needs no rollback.
pull_images "$sha"

# 2. Record, before touching containers: from here on a failure is rolled back to `previous`.
if [ "$current" != "$sha" ]; then
  write_state previous "$current"
  write_state current "$sha"
fi
record "deploy $sha previous=${current:-none}"

# 3. Start. --no-build: the VM runs published images only.
compose "$sha" up -d --no-build --remove-orphans

# 4. Ready: Redis answers and every queue has a worker with its model loaded.
wait_ready || die "release $sha did not become ready"

# 5. Tidy: keep the newest KEEP_RELEASES releases (always this one and `previous`), and
# delete the SHA-tagged images of the others; a worker image is ~2 GB.
prune_releases "$sha" "$(read_state previous)"

log "deployed $sha"
