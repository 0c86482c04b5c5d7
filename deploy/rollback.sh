#!/usr/bin/env bash
# Roll the VM back to an earlier release.
#
#   deploy/rollback.sh                 back to the SHA recorded as `previous` by deploy.sh
#   deploy/rollback.sh SHA             to that release (any folder under releases/)
#   deploy/rollback.sh --from SHA      what CI runs when a deploy fails: roll back only if
#                                      SHA is what runs now (a deploy that failed before
#                                      switching changed nothing and needs no rollback)
#
# Uses the target release's own compose file and SHA-tagged images, waits for /readyz, and
# clears `previous`, so a second rollback never flips back to the broken release by itself.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

from=""
target=""
case "${1:-}" in
  --from)
    from="${2:-}"
    valid_sha "$from" || die "usage: rollback.sh --from SHA"
    ;;
  "") ;;
  *)
    target="$1"
    valid_sha "$target" || die "usage: rollback.sh [SHA | --from SHA]"
    ;;
esac
[ -f "$ENV_FILE" ] || die "no env file at $ENV_FILE"
take_lock

current="$(read_state current)"
if [ -n "$from" ] && [ "$current" != "$from" ]; then
  log "release $from never replaced ${current:-anything}: nothing to roll back"
  exit 0
fi
target="${target:-$(read_state previous)}"
[ -n "$target" ] || die "no previous release recorded; pass one: rollback.sh SHA (see $DEPLOY_ROOT/releases)"
[ "$target" != "$current" ] || die "release $target is already the current one"
[ -f "$(release_dir "$target")/docker-compose.yml" ] || die "release $target is not on this VM any more"

log "rolling back from ${current:-nothing} to $target"
pull_images "$target"
write_state current "$target"
write_state previous ""
record "rollback $target from=${current:-none}"
compose "$target" up -d --no-build --remove-orphans
wait_ready || die "release $target did not become ready after the rollback"
log "rolled back to $target"
