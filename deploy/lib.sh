# shellcheck shell=bash
# Shared by deploy.sh, rollback.sh and evaluate.sh on the VM. Sourced, never run.
#
# Layout under DEPLOY_ROOT (default /opt/catdog):
#   .env                      secrets and sizes (from .env.example), never in git
#   releases/<sha>/           docker-compose.yml and deploy/ of that commit, shipped by CI
#   current, previous         the SHA that runs now and the one before it
#   history.log               one line per deploy or rollback
#   eval-data/                labelled photos for the post-deployment evaluation

DEPLOY_ROOT="${DEPLOY_ROOT:-/opt/catdog}"
ENV_FILE="${ENV_FILE:-$DEPLOY_ROOT/.env}"
# One compose project whatever directory a release's compose file sits in, so a new
# release replaces the containers of the old one.
COMPOSE_PROJECT="${COMPOSE_PROJECT:-catdog}"
READY_TIMEOUT_S="${READY_TIMEOUT_S:-600}"
KEEP_RELEASES="${KEEP_RELEASES:-5}"

log() { echo "[$(date -u +%H:%M:%S)] $*"; }
die() {
  echo "error: $*" >&2
  exit 1
}

valid_sha() { [[ "$1" =~ ^[0-9a-f]{7,40}$ ]]; }

release_dir() { echo "$DEPLOY_ROOT/releases/$1"; }

read_state() {
  local file="$DEPLOY_ROOT/$1"
  if [ -f "$file" ]; then cat "$file"; fi
}

write_state() { printf '%s\n' "$2" >"$DEPLOY_ROOT/$1.tmp" && mv "$DEPLOY_ROOT/$1.tmp" "$DEPLOY_ROOT/$1"; }

record() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >>"$DEPLOY_ROOT/history.log"; }

# compose SHA ARGS...: docker compose on that release's file with its images.
compose() {
  local sha="$1"
  shift
  IMAGE_TAG="$sha" docker compose --project-name "$COMPOSE_PROJECT" --env-file "$ENV_FILE" \
    -f "$(release_dir "$sha")/docker-compose.yml" "$@"
}

# The proxy's port on this host, from the env file (80 unless HTTP_PORT says otherwise).
http_port() {
  local port
  port="$(sed -n 's/^HTTP_PORT=//p' "$ENV_FILE" | tail -n 1)"
  echo "${port:-80}"
}

# wait_ready: poll /readyz through the proxy until it answers 200 (Redis up and every
# queue served by a worker with a model loaded), or fail after READY_TIMEOUT_S.
wait_ready() {
  local url="${READY_URL:-http://127.0.0.1:$(http_port)/readyz}"
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  log "waiting for $url (up to ${READY_TIMEOUT_S}s)"
  until curl -fsS -o /dev/null --max-time 5 "$url"; do
    if ((SECONDS >= deadline)); then
      log "not ready after ${READY_TIMEOUT_S}s; last answer:"
      curl -sS --max-time 5 "$url" >&2 || echo "(no answer)" >&2
      return 1
    fi
    sleep 5
  done
  log "ready"
}

# pull_images SHA: make every image of that release present locally, pulling only the missing
# ones. Tags are immutable here (a SHA, or a pinned version), so a present image is the right
# one, and a rollback to images still on the VM works even when the registry does not answer.
# A tag that cannot be pulled fails here, before any running container is touched.
pull_images() {
  local sha="$1" images image
  images="$(compose "$sha" config --images)"
  [ -n "$images" ] || die "release $sha names no images"
  for image in $images; do
    if ! docker image inspect "$image" >/dev/null 2>&1; then
      log "pulling $image"
      docker pull --quiet "$image" >/dev/null || die "image $image could not be pulled"
    fi
  done
}

# prune_releases KEEP_SHA...: remove all but the newest KEEP_RELEASES release folders, never
# one named on the command line, with the images tagged with their SHA. Failing to remove
# an image (still used by a container) is logged: the deployment itself has succeeded.
prune_releases() {
  local keep=" $* " dir image
  local -a old
  mapfile -t old < <(find "$DEPLOY_ROOT/releases" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %f\n' |
    sort -rn | tail -n +"$((KEEP_RELEASES + 1))" | cut -d' ' -f2)
  for dir in "${old[@]}"; do
    [[ "$keep" == *" $dir "* ]] && continue
    for image in $(compose "$dir" config --images | grep -F ":$dir"); do
      docker image rm "$image" >/dev/null 2>&1 || log "kept image $image (still in use)"
    done
    rm -rf "${DEPLOY_ROOT:?}/releases/$dir"
    log "pruned release $dir"
  done
}

# Serialise deploys and rollbacks (CI retries, a person at the console).
take_lock() {
  exec 9>"$DEPLOY_ROOT/.lock"
  flock -w 600 9 || die "another deploy or rollback holds $DEPLOY_ROOT/.lock"
}
