#!/usr/bin/env bash
# Wait until URL answers 2xx: scripts/wait-for-http.sh URL [TIMEOUT_SECONDS (default 60)]
set -euo pipefail
url=${1:?usage: wait-for-http.sh URL [TIMEOUT_SECONDS]}
timeout=${2:-60}
deadline=$((SECONDS + timeout))
until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
  if (( SECONDS >= deadline )); then
    echo "wait-for-http: $url did not answer 2xx within ${timeout}s" >&2
    exit 1
  fi
  sleep 0.5
done
