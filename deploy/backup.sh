#!/usr/bin/env bash
# Back up what only this VM holds: deploy/backup.sh [DEST]
#
#   mlflow.db              the registry and tracking database (SQLite's online backup, so a
#                          write in progress never leaves a torn copy)
#   mlflow-artifacts.tar   every run's artifacts, the champion's checkpoint among them
#   redis-data.tar         Redis's append-only files (jobs, API keys, quality records)
#   release                the release that ran ("SHA N"), for deploy/restore.sh
#
# DEST defaults to $DEPLOY_ROOT/backups/<UTC time>; a folder in a mounted bucket works
# as well (gcsfuse, s3fs), or copy it off with `gsutil -m cp -r` / `aws s3 sync`. Keeps the
# newest KEEP_BACKUPS (default 7) under the default folder. Runs while the stack serves.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ -f "$ENV_FILE" ] || die "no env file at $ENV_FILE"
running="$(read_state current)"
[ -n "$running" ] || die "no release runs here: nothing to back up"
read -r sha version <<<"$running"
default_root="$DEPLOY_ROOT/backups"
dest="${1:-$default_root/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$dest"
chmod 0700 "$dest"

container() { compose "$sha" "$version" ps -q "$1"; }
mlflow="$(container mlflow)"
redis="$(container redis)"
if [ -z "$mlflow" ] || [ -z "$redis" ]; then die "MLflow and Redis must be running to be backed up"; fi

log "backing up MLflow's database"
docker exec "$mlflow" python -c 'import sqlite3
source = sqlite3.connect("/mlflow/mlflow.db")
target = sqlite3.connect("/tmp/mlflow-backup.db")
source.backup(target)
target.close()'
docker exec "$mlflow" cat /tmp/mlflow-backup.db >"$dest/mlflow.db.part"
docker exec "$mlflow" rm -f /tmp/mlflow-backup.db
mv "$dest/mlflow.db.part" "$dest/mlflow.db"

log "backing up MLflow's artifacts"
docker exec "$mlflow" tar -C /mlflow -cf - artifacts >"$dest/mlflow-artifacts.tar.part"
mv "$dest/mlflow-artifacts.tar.part" "$dest/mlflow-artifacts.tar"

# An AOF rewrite replaces files while tar reads them: wait for none to be in progress.
log "backing up Redis's append-only files"
# As Redis's own utils/aof_backup.sh does: no rewrite may replace the files while they are
# copied (automatic rewrites off, and none running); the incr file may still grow, and a
# copy cut inside its last command loads (aof-load-truncated, on by default).
rewrite_percentage="$(docker exec "$redis" redis-cli config get auto-aof-rewrite-percentage | tail -n 1)"
docker exec "$redis" redis-cli config set auto-aof-rewrite-percentage 0 >/dev/null
trap 'docker exec "$redis" redis-cli config set auto-aof-rewrite-percentage "$rewrite_percentage" >/dev/null' EXIT
for _ in $(seq 1 60); do
  docker exec "$redis" redis-cli info persistence | grep -q '^aof_rewrite_in_progress:0' && break
  sleep 1
done
# GNU tar (Debian-based images) exits 1 for a file that grew while read, which is expected
# here; busybox tar (the Alpine image) copies the size it saw and does not complain.
# shellcheck disable=SC2016  # expanded by the container's shell
docker exec "$redis" sh -c 'if tar --version 2>/dev/null | grep -q GNU; then
    tar --warning=no-file-changed -C /data -cf - . || [ "$?" -eq 1 ]
  else
    tar -C /data -cf - .
  fi' >"$dest/redis-data.tar.part"
mv "$dest/redis-data.tar.part" "$dest/redis-data.tar"

printf '%s\n' "$running" >"$dest/release"
record "backup to $dest (release $running)"
log "backup of release $running in $dest: $(du -sh "$dest" | cut -f1)"

if [ -z "${1:-}" ]; then
  find "$default_root" -mindepth 1 -maxdepth 1 -type d | sort -r | tail -n +"$((${KEEP_BACKUPS:-7} + 1))" |
    while read -r old; do rm -rf "$old" && log "removed old backup $old"; done
fi
