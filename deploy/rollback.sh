#!/usr/bin/env bash
# Roll the VM back to an earlier release (code and model version together).
#
#   deploy/rollback.sh                      back to the release recorded as `previous`
#   deploy/rollback.sh SHA MODEL_VERSION    to that release (any folder under releases/)
#   deploy/rollback.sh --from SHA VERSION   what CI runs when a deploy fails: roll back only
#                                           if that release is what runs now (a deploy that
#                                           failed before switching changed nothing)
#
# Uses the target release's own compose file, SHA-tagged images and model version, waits for
# /readyz, and clears `previous`, so a second rollback never flips back to the broken
# release by itself.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

from=""
target=""
case "${1:-}" in
  --from)
    if ! valid_sha "${2:-}" || ! valid_version "${3:-}"; then die "usage: rollback.sh --from SHA MODEL_VERSION"; fi
    from="$2 $3"
    ;;
  "") ;;
  *)
    if ! valid_sha "$1" || ! valid_version "${2:-}"; then
      die "usage: rollback.sh [SHA MODEL_VERSION | --from SHA MODEL_VERSION]"
    fi
    target="$1 $2"
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
[ -n "$target" ] || die "no previous release recorded; pass one: rollback.sh SHA MODEL_VERSION (see $DEPLOY_ROOT/history.log)"
[ "$target" != "$current" ] || die "release $target is already the current one"
read -r sha version <<<"$target"
[ -f "$(release_dir "$sha")/docker-compose.yml" ] || die "release $sha is not on this VM any more"

log "rolling back from ${current:-nothing} to $sha with models:/$MODEL_NAME/$version"
pull_images "$sha"
write_state current "$target"
write_state previous ""
record "rollback $sha model=$version from=${current:-none}"
switch "$sha" "$version"
wait_ready || die "release $target did not become ready after the rollback"
log "rolled back to $sha with models:/$MODEL_NAME/$version"
