# shellcheck shell=bash
# Shared by deploy.sh, rollback.sh and evaluate.sh on the VM. Sourced, never run.
#
# A release is code and model together: a commit SHA (its images and compose file) and a
# model version number of the registry (models:/catdog/N).
#
# Layout under DEPLOY_ROOT (default /opt/catdog):
#   .env                      secrets and sizes (from .env.example), never in git
#   releases/<sha>/           docker-compose.yml and deploy/ of that commit, shipped by CI
#   current, previous         the release that runs now and the one before it: "SHA N"
#   history.log               one line per deploy or rollback
#   config/                   the running release's proxy, Prometheus and Grafana files
#   docker-compose.override.yml  optional: this VM's own additions, applied to every release
#   tls/                      fullchain.pem and privkey.pem for the proxy (deploy/tls.sh)
#   smoke/                    cat.jpg and dog.jpg for deploy/smoke-test.sh
#   eval-data/                labelled photos for the post-deployment evaluation
#   backups/                  deploy/backup.sh's default destination

DEPLOY_ROOT="${DEPLOY_ROOT:-/opt/catdog}"
ENV_FILE="${ENV_FILE:-$DEPLOY_ROOT/.env}"
# One compose project whatever directory a release's compose file sits in, so a new
# release replaces the containers of the old one.
COMPOSE_PROJECT="${COMPOSE_PROJECT:-catdog}"
READY_TIMEOUT_S="${READY_TIMEOUT_S:-600}"
KEEP_RELEASES="${KEEP_RELEASES:-5}"
MODEL_NAME="${MODEL_NAME:-catdog}"
CONFIG_DIR="$DEPLOY_ROOT/config"
OVERRIDE_FILE="$DEPLOY_ROOT/docker-compose.override.yml"

log() { echo "[$(date -u +%H:%M:%S)] $*"; }
die() {
  echo "error: $*" >&2
  exit 1
}

valid_sha() { [[ "$1" =~ ^[0-9a-f]{7,40}$ ]]; }

valid_version() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }

release_dir() { echo "$DEPLOY_ROOT/releases/$1"; }

read_state() {
  local file="$DEPLOY_ROOT/$1"
  if [ -f "$file" ]; then cat "$file"; fi
}

write_state() { printf '%s\n' "$2" >"$DEPLOY_ROOT/$1.tmp" && mv "$DEPLOY_ROOT/$1.tmp" "$DEPLOY_ROOT/$1"; }

record() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >>"$DEPLOY_ROOT/history.log"; }

# compose SHA VERSION ARGS...: docker compose on that release's file with its images and
# its model version (and this VM's override file, when there is one).
compose() {
  local sha="$1" version="$2"
  shift 2
  local -a files=(-f "$(release_dir "$sha")/docker-compose.yml")
  [ -f "$OVERRIDE_FILE" ] && files+=(-f "$OVERRIDE_FILE")
  IMAGE_TAG="$sha" CATDOG_MODEL_URI="models:/$MODEL_NAME/$version" DEPLOY_CONFIG_DIR="$CONFIG_DIR" \
    docker compose --project-name "$COMPOSE_PROJECT" --env-file "$ENV_FILE" "${files[@]}" "$@"
}

# env_value NAME DEFAULT: a variable of the env file (the last line that sets it).
env_value() {
  local value
  value="$(sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1)"
  echo "${value:-$2}"
}

# wait_ready: poll /readyz through the proxy, over TLS, until it answers 200 (Redis up and
# every queue served by a worker with a model loaded), or fail after READY_TIMEOUT_S.
# Prints what it sees every 30 s, so a slow start is never silent (CircleCI ends a step
# that prints nothing for 10 minutes).
wait_ready() {
  local url="${READY_URL:-https://127.0.0.1:$(env_value HTTPS_PORT 443)/readyz}"
  local started=$SECONDS deadline=$((SECONDS + READY_TIMEOUT_S)) next_report=$((SECONDS + 30)) answer
  log "waiting for $url (up to ${READY_TIMEOUT_S}s)"
  # -k: the certificate names the public domain, not 127.0.0.1.
  until answer="$(curl -ksS --max-time 5 -w ' (HTTP %{http_code})' "$url" 2>&1)" && [[ "$answer" == *"(HTTP 200)" ]]; do
    if ((SECONDS >= deadline)); then
      log "not ready after ${READY_TIMEOUT_S}s; last answer: ${answer:0:400}"
      return 1
    fi
    if ((SECONDS >= next_report)); then
      log "not ready yet after $((SECONDS - started))s: ${answer:0:200}"
      next_report=$((SECONDS + 30))
    fi
    sleep 3
  done
  log "ready after $((SECONDS - started))s"
}

# Where this VM keeps the proxy's certificate and the evaluation photos (the env file may
# move them).
tls_dir() { env_value TLS_DIR "$DEPLOY_ROOT/tls"; }
eval_data_dir() { env_value EVAL_DATA_DIR "$DEPLOY_ROOT/eval-data"; }

# require_eval_photos: the evaluation gate has photos to measure. An empty or missing folder
# would make compose create it and the gate measure nothing.
require_eval_photos() {
  local dir
  dir="$(eval_data_dir)"
  [ -n "$(find "$dir" -type f -print -quit 2>/dev/null)" ] ||
    die "no labelled photos under $dir for the evaluation gate (cat/ and dog/ sub-folders, or cat.N.jpg names)"
}

# The registry, through the MLflow server of the stack (published on the VM's loopback).
mlflow_url() { echo "http://127.0.0.1:$(env_value MLFLOW_PORT 5000)"; }

# resolve_alias ALIAS: the version number the alias names now, or a message and status 3.
resolve_alias() {
  local body
  body="$(curl -sS --max-time 10 -G "$(mlflow_url)/api/2.0/mlflow/registered-models/alias" \
    --data-urlencode "name=$MODEL_NAME" --data-urlencode "alias=$1" 2>&1)" ||
    die "the registry at $(mlflow_url) does not answer: $body"
  python3 -c 'import json, sys
body = json.loads(sys.argv[1])
version = body.get("model_version", {}).get("version")
if version is None:
    sys.exit(body.get("message") or sys.argv[1])
print(version)' "$body" 2>"$DEPLOY_ROOT/.resolve.err" || {
    echo "no $MODEL_NAME@$1 in the registry at $(mlflow_url): $(cat "$DEPLOY_ROOT/.resolve.err")" >&2
    return 3
  }
}

# model_version_exists VERSION: the registry holds models:/$MODEL_NAME/VERSION.
model_version_exists() {
  curl -fsS -o /dev/null --max-time 10 -G "$(mlflow_url)/api/2.0/mlflow/model-versions/get" \
    --data-urlencode "name=$MODEL_NAME" --data-urlencode "version=$1"
}

# sync_config SHA: the release's proxy, Prometheus and Grafana files into CONFIG_DIR, at a
# path that never changes, so `up -d` recreates none of those services when the files are
# the same. Prints the services whose files changed (they are reloaded after the switch).
sync_config() {
  local src
  src="$(release_dir "$1")/deploy"
  mkdir -p "$CONFIG_DIR"
  # `|| return 1`: it runs in a command substitution, where errexit does not apply.
  changed_service proxy "$src" nginx || return 1
  changed_service prometheus "$src" prometheus.yml alerts.yml || return 1
  changed_service grafana "$src" grafana || return 1
}

changed_service() {
  local service="$1" src="$2" item changed=false
  shift 2
  for item in "$@"; do
    if ! diff -qr "$src/$item" "$CONFIG_DIR/$item" >/dev/null 2>&1; then
      # A first copy changes nothing that runs: the service starts with it.
      [ -e "$CONFIG_DIR/$item" ] && changed=true
      rm -rf "${CONFIG_DIR:?}/$item.new"
      cp -a "$src/$item" "$CONFIG_DIR/$item.new" || return 1
      rm -rf "${CONFIG_DIR:?}/$item"
      mv "$CONFIG_DIR/$item.new" "$CONFIG_DIR/$item" || return 1
    fi
  done
  if $changed; then echo "$service"; fi
}

# reload_changed SHA VERSION SERVICE...: restart the services whose configuration changed
# (their containers were left running by `up -d`, which cannot see inside mounted folders).
reload_changed() {
  local sha="$1" version="$2"
  shift 2
  [ "$#" -gt 0 ] || return 0
  log "configuration changed for: $*; restarting them"
  compose "$sha" "$version" restart "$@" >/dev/null
}

# switch SHA VERSION: start that release. The gateway and the realtime worker, which answer
# callers, are rolled (roll_service); every other container whose definition changed is
# recreated by `up -d`, a bulk worker with Celery's warm shutdown (SIGTERM, then
# stop_grace_period), its unfinished tasks going back to the queue.
switch() {
  local sha="$1" version="$2" changed
  changed="$(sync_config "$sha")" || die "release $sha lacks configuration files of $(release_dir "$sha")/deploy"
  roll_service "$sha" "$version" worker-realtime || return 1
  roll_service "$sha" "$version" gateway || return 1
  compose "$sha" "$version" up -d --no-build --remove-orphans || return 1
  # shellcheck disable=SC2086 # one service name per word
  reload_changed "$sha" "$version" $changed
}

# roll_service SHA VERSION SERVICE: start the release's container of SERVICE beside the
# running one, wait until it is healthy, then stop the old one, so callers always have one
# (the proxy finds both by name and tries the other when one refuses). Nothing to do when
# none runs yet or its definition has not changed.
roll_service() {
  local sha="$1" version="$2" service="$3" old want new id
  old="$(compose "$sha" "$version" ps -q "$service")"
  [ -n "$old" ] || return 0
  want="$(compose "$sha" "$version" config --hash="$service" | cut -d' ' -f2)"
  [ "$(docker inspect --format '{{index .Config.Labels "com.docker.compose.config-hash"}}' "$old")" != "$want" ] ||
    return 0
  log "rolling $service: starting the new container beside the old"
  compose "$sha" "$version" up -d --no-deps --no-recreate --no-build \
    --scale "$service=$(($(wc -w <<<"$old") + 1))" "$service" >/dev/null
  for id in $(compose "$sha" "$version" ps -q "$service"); do
    grep -qw "$id" <<<"$old" || new="$id"
  done
  [ -n "${new:-}" ] || die "no new container of $service was started"
  wait_healthy "$new" || return 1
  # shellcheck disable=SC2086 # container ids, one per word
  docker stop $old >/dev/null && docker rm $old >/dev/null
  log "rolled $service"
}

# wait_healthy CONTAINER: until its healthcheck passes (READY_TIMEOUT_S at most).
wait_healthy() {
  local deadline=$((SECONDS + READY_TIMEOUT_S)) status
  while status="$(docker inspect --format '{{.State.Health.Status}}' "$1")" && [ "$status" != healthy ]; do
    if ((SECONDS >= deadline)) || [ "$status" = unhealthy ]; then
      log "container $1 is $status"
      return 1
    fi
    sleep 2
  done
}

# release_images SHA: the images of the release's services that run here (no profile, or one
# of COMPOSE_PROFILES and `tools`), one per line. Read from `config`, whose --images flag
# compose v1 lacks and whose v1 output lists the services of every profile. List items sit
# at the key's indentation in v1's YAML (PyYAML) and two spaces deeper in v2's (Go).
release_images() {
  compose "$1" 0 config | awk -v active=",$(env_value COMPOSE_PROFILES ''),tools," '
    /^[^ ]/ { in_services = ($0 == "services:") }
    in_services && /^  [^ ]/ { flush(); image = ""; profiles = ""; in_profiles = 0 }
    in_services && /^    image: / { image = $2; gsub(/"/, "", image) }
    in_services && /^    [a-z_]+:/ { in_profiles = ($1 == "profiles:") }
    in_services && in_profiles && /^    (  )?- / { profiles = profiles "," $2 }
    function flush(  n, i, names, runs) {
      if (image == "") return
      runs = (profiles == "")
      n = split(substr(profiles, 2), names, ",")
      for (i = 1; i <= n; i++) if (index(active, "," names[i] ",")) runs = 1
      if (runs) print image
    }
    END { flush() }' | sort -u
}

# pull_images SHA: make every image of that release present locally, pulling only the missing
# ones. Tags are immutable here (a SHA, or a pinned version), so a present image is the right
# one, and a rollback to images still on the VM works even when the registry does not answer.
# A tag that cannot be pulled fails here, before any running container is touched.
pull_images() {
  local sha="$1" images image
  images="$(release_images "$sha")"
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
    for image in $(release_images "$dir" | grep -F ":$dir"); do
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
