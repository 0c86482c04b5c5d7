#!/usr/bin/env bash
# Restore a backup made by deploy/backup.sh: deploy/restore.sh BACKUP_DIR
#
# Stops the stack, replaces the MLflow and Redis volumes' contents with the backup's
# (creating the volumes when they are gone: a new VM, or volumes destroyed), starts the
# release the backup was taken from (its code and model version) and waits for /readyz.
# The release's folder must be on this VM (CI ships it; copy it from git otherwise).
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

backup="${1:?usage: restore.sh BACKUP_DIR}"
backup="$(cd "$backup" && pwd)"
for file in mlflow.db mlflow-artifacts.tar redis-data.tar release; do
  [ -s "$backup/$file" ] || die "$backup/$file is missing: not a backup made by deploy/backup.sh"
done
[ -f "$ENV_FILE" ] || die "no env file at $ENV_FILE"
read -r sha version <"$backup/release"
if ! valid_sha "$sha" || ! valid_version "$version"; then die "$backup/release does not name a release"; fi
[ -f "$(release_dir "$sha")/docker-compose.yml" ] || die "release $sha is not on this VM (ship it to $(release_dir "$sha"))"
take_lock

log "restoring $backup (release $sha, models:/$MODEL_NAME/$version)"
pull_images "$sha"
sync_config "$sha" >/dev/null
if ! compose "$sha" "$version" stop >/dev/null 2>&1; then
  log "nothing of release $sha could be stopped (none of it runs here): going on"
fi
# Containers and volumes exist, none running: the volumes can be filled.
compose "$sha" "$version" up --no-start >/dev/null

# fill SERVICE VOLUME SCRIPT: run SCRIPT as root (with the default capabilities, which the
# service itself never has) in a one-off container of SERVICE's image, its volume at /data
# and the backup folder at /backup.
fill() {
  local image
  image="$(docker inspect --format '{{.Config.Image}}' "$(compose "$sha" "$version" ps -q "$1")")"
  docker run --rm --user 0 --entrypoint sh -v "${COMPOSE_PROJECT}_$2:/data" -v "$backup:/backup:ro" \
    "$image" -c "$3"
}
fill mlflow mlflow-data 'rm -rf /data/artifacts /data/mlflow.db && tar -C /data -xf /backup/mlflow-artifacts.tar && cp /backup/mlflow.db /data/mlflow.db'
fill redis redis-data 'find /data -mindepth 1 -delete && tar -C /data -xf /backup/redis-data.tar && chown -R redis /data'

write_state current "$sha $version"
record "restore $backup (release $sha model=$version)"
compose "$sha" "$version" up -d --no-build --remove-orphans
wait_ready || die "the restored release did not become ready"
log "restored: release $sha with models:/$MODEL_NAME/$version serves again"
