#!/usr/bin/env bash
# Stop what scripts/serve.sh started (`make down`), and nothing else: each pid file in run/
# names a process-group leader that serve.sh started. TERM first (Celery finishes its current
# task; unfinished ones are redelivered), KILL after a grace period.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
RUN_DIR=run
GRACE_S=${GRACE_S:-20}

shopt -s nullglob
pidfiles=("$RUN_DIR"/*.pid)
if (( ${#pidfiles[@]} == 0 )); then
  echo "catdog: nothing to stop"
  exit 0
fi

# The gateway and Flower first (no new work), then the workers, Redis last.
order() {
  for f in "${pidfiles[@]}"; do
    case $(basename "$f" .pid) in
      gateway|flower) echo "0 $f" ;;
      redis) echo "2 $f" ;;
      *) echo "1 $f" ;;
    esac
  done | sort -n | cut -d' ' -f2-
}

for pidfile in $(order); do
  name=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    echo "catdog: stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null
    for _ in $(seq $((GRACE_S * 5))); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "catdog: $name did not stop in ${GRACE_S}s; killing it"
      kill -KILL -- "-$pid" 2>/dev/null
    fi
  fi
  rm -f "$pidfile"
done
echo "catdog: stopped"
