#!/usr/bin/env bash
# Smoke test of a running deployment: deploy/smoke-test.sh URL
#
#   1. /readyz answers 200 (waits up to SMOKE_READY_TIMEOUT_S, default 180)
#   2. a real cat photo comes back `cat`, a real dog photo `dog`   (POST /predict)
#   3. a corrupt (truncated) JPEG is refused with 422
#   4. a small job (the same two photos) completes with both items right  (POST /jobs)
# Prints PASS/FAIL per check and exits 1 if any check failed. Needs curl and python3.
# The photos: SMOKE_PHOTOS_DIR (default deploy/smoke/) must hold a clear cat.jpg and dog.jpg of
# your own (the repository ships none); deploy/smoke/corrupt.jpg is a synthetic JPEG cut in half.
# With API keys on, CATDOG_API_KEY holds a key (it is sent from a file, never in arguments).
set -euo pipefail

base="${1:?usage: smoke-test.sh URL (for example http://127.0.0.1:8000)}"
base="${base%/}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
photos="${SMOKE_PHOTOS_DIR:-$here/smoke}"
for photo in cat.jpg dog.jpg; do
  if [[ ! -s "$photos/$photo" ]]; then
    echo "smoke-test: $photos/$photo is missing: put a clear $photo there or set SMOKE_PHOTOS_DIR" >&2
    exit 2
  fi
done
ready_timeout="${SMOKE_READY_TIMEOUT_S:-180}"
job_timeout="${SMOKE_JOB_TIMEOUT_S:-120}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/headers"
if [[ -n "${CATDOG_API_KEY:-}" ]]; then
  (umask 077 && printf 'X-API-Key: %s\n' "$CATDOG_API_KEY" >"$tmp/headers")
fi
failures=0
status=""

pass() { echo "PASS $*"; }
fail() {
  echo "FAIL $*" >&2
  failures=$((failures + 1))
}

# request METHOD PATH [curl args]: the status code goes to $status (000 when there was no
# answer at all), the body to $tmp/body.
request() {
  local method="$1" path="$2"
  shift 2
  status="$(curl -sS -o "$tmp/body" -w '%{http_code}' --max-time 30 -H "@$tmp/headers" -X "$method" "$@" \
    "$base$path" 2>"$tmp/curl.err")" || status="000"
}

# fields KEY...: values from the JSON body, one per line, "(missing)" for a key it lacks
# (or for every key when the body is not JSON). Keys are dotted: results.items.0.label.
fields() {
  python3 - "$tmp/body" "$@" <<'EOF'
import json, sys
try:
    body = json.load(open(sys.argv[1]))
except ValueError:
    body = None
for path in sys.argv[2:]:
    value = body
    try:
        for key in path.split("."):
            value = value[int(key)] if isinstance(value, list) else value[key]
    except (KeyError, IndexError, TypeError, ValueError):
        value = "(missing)"
    print(value)
EOF
}

body_excerpt() {
  if [ -s "$tmp/body" ]; then head -c 300 "$tmp/body"; fi
}

check_ready() {
  local deadline=$((SECONDS + ready_timeout))
  while :; do
    request GET /readyz
    [ "$status" = 200 ] && break
    if ((SECONDS >= deadline)); then
      fail "GET /readyz answered $status after ${ready_timeout}s: $(body_excerpt)$(cat "$tmp/curl.err")"
      return 1
    fi
    sleep 3
  done
  pass "GET /readyz 200"
}

check_predict() {
  local photo="$1" expected="$2" label probability
  request POST /predict -F "file=@$photos/$photo;type=image/jpeg"
  if [ "$status" != 200 ]; then
    fail "POST /predict $photo: status $status, expected 200: $(body_excerpt)"
    return
  fi
  { read -r label && read -r probability; } < <(fields label probability)
  if [ "$label" = "$expected" ]; then
    pass "POST /predict $photo -> $label ($probability)"
  else
    fail "POST /predict $photo -> $label, expected $expected: $(body_excerpt)"
  fi
}

check_corrupt() {
  request POST /predict -F "file=@$here/smoke/corrupt.jpg;type=image/jpeg"
  if [ "$status" = 422 ]; then
    pass "POST /predict corrupt.jpg -> 422"
  else
    fail "POST /predict corrupt.jpg: status $status, expected 422: $(body_excerpt)"
  fi
}

check_job() {
  local job_id job_status n_done n_failed first second deadline=$((SECONDS + job_timeout))
  request POST /jobs -F "files=@$photos/cat.jpg;type=image/jpeg" \
    -F "files=@$photos/dog.jpg;type=image/jpeg"
  if [ "$status" != 202 ]; then
    fail "POST /jobs: status $status, expected 202: $(body_excerpt)"
    return
  fi
  read -r job_id < <(fields job_id)
  if [ "$job_id" = "(missing)" ]; then
    fail "POST /jobs: no job_id in the answer: $(body_excerpt)"
    return
  fi
  while :; do
    request GET "/jobs/$job_id"
    if [ "$status" != 200 ]; then
      fail "GET /jobs/$job_id: status $status: $(body_excerpt)"
      return
    fi
    { read -r job_status && read -r n_done && read -r n_failed && read -r first &&
      read -r second; } < <(fields status "done" failed results.items.0.label results.items.1.label)
    case "$job_status" in succeeded | failed | cancelled | "(missing)") break ;; esac
    if ((SECONDS >= deadline)); then
      fail "job $job_id still $job_status after ${job_timeout}s"
      return
    fi
    sleep 1
  done
  if [ "$job_status" != succeeded ] || [ "$n_done" != 2 ] || [ "$n_failed" != 0 ]; then
    fail "job $job_id ended $job_status with done=$n_done failed=$n_failed, expected succeeded 2/0"
  elif [ "$first" = cat ] && [ "$second" = dog ]; then
    pass "job $job_id succeeded: cat.jpg -> cat, dog.jpg -> dog"
  else
    fail "job $job_id labels: cat.jpg -> $first, dog.jpg -> $second"
  fi
}

echo "smoke test of $base"
if check_ready; then
  check_predict cat.jpg cat
  check_predict dog.jpg dog
  check_corrupt
  check_job
fi

if [ "$failures" -gt 0 ]; then
  echo "smoke test FAILED: $failures check(s) failed against $base" >&2
  exit 1
fi
echo "smoke test passed against $base"
