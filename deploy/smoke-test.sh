#!/usr/bin/env bash
# Smoke test of a running deployment: deploy/smoke-test.sh URL
#
#   1. /readyz answers 200 (waits up to SMOKE_READY_TIMEOUT_S, default 180)
#   2. a real cat photo comes back `cat`, a real dog photo `dog`   (POST /predict)
#   3. a corrupt (truncated) JPEG is refused with 422
#   4. a small job (the same two photos) completes with both items right  (POST /jobs)
# Prints PASS/FAIL per check and exits 1 if any check failed. Needs curl and python3.
# The photos are deploy/smoke/{cat,dog}.jpg; corrupt.jpg is a synthetic JPEG cut in half.
set -euo pipefail

base="${1:?usage: smoke-test.sh URL (for example http://127.0.0.1:8000)}"
base="${base%/}"
photos="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/smoke"
ready_timeout="${SMOKE_READY_TIMEOUT_S:-180}"
job_timeout="${SMOKE_JOB_TIMEOUT_S:-120}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
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
  status="$(curl -sS -o "$tmp/body" -w '%{http_code}' --max-time 30 -X "$method" "$@" \
    "$base$path" 2>"$tmp/curl.err")" || status="000"
}

# field EXPR: a value from the JSON body, e.g. `field label` or `field results.items.0.label`.
field() {
  python3 - "$tmp/body" "$1" <<'EOF'
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    value = value[int(key)] if isinstance(value, list) else value[key]
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
  local photo="$1" expected="$2" label
  request POST /predict -F "file=@$photos/$photo;type=image/jpeg"
  if [ "$status" != 200 ]; then
    fail "POST /predict $photo: status $status, expected 200: $(body_excerpt)"
    return
  fi
  label="$(field label 2>/dev/null)" || label="(no label in the answer)"
  if [ "$label" = "$expected" ]; then
    pass "POST /predict $photo -> $label ($(field probability))"
  else
    fail "POST /predict $photo -> $label, expected $expected: $(body_excerpt)"
  fi
}

check_corrupt() {
  request POST /predict -F "file=@$photos/corrupt.jpg;type=image/jpeg"
  if [ "$status" = 422 ]; then
    pass "POST /predict corrupt.jpg -> 422"
  else
    fail "POST /predict corrupt.jpg: status $status, expected 422: $(body_excerpt)"
  fi
}

check_job() {
  local job_id job_status deadline=$((SECONDS + job_timeout))
  request POST /jobs -F "files=@$photos/cat.jpg;type=image/jpeg" \
    -F "files=@$photos/dog.jpg;type=image/jpeg"
  if [ "$status" != 202 ]; then
    fail "POST /jobs: status $status, expected 202: $(body_excerpt)"
    return
  fi
  job_id="$(field job_id)" || {
    fail "POST /jobs: no job_id in the answer: $(body_excerpt)"
    return
  }
  while :; do
    request GET "/jobs/$job_id"
    [ "$status" = 200 ] || {
      fail "GET /jobs/$job_id: status $status: $(body_excerpt)"
      return
    }
    job_status="$(field status)" || {
      fail "GET /jobs/$job_id: no status in the answer: $(body_excerpt)"
      return
    }
    case "$job_status" in succeeded | failed | cancelled) break ;; esac
    if ((SECONDS >= deadline)); then
      fail "job $job_id still $job_status after ${job_timeout}s"
      return
    fi
    sleep 1
  done
  local n_done n_failed
  n_done="$(field "done")" || n_done="(missing)"
  n_failed="$(field "failed")" || n_failed="(missing)"
  if [ "$job_status" != succeeded ] || [ "$n_done" != 2 ] || [ "$n_failed" != 0 ]; then
    fail "job $job_id ended $job_status with done=$n_done failed=$n_failed, expected succeeded 2/0"
    return
  fi
  local first second
  first="$(field results.items.0.label)" || first="(missing)"
  second="$(field results.items.1.label)" || second="(missing)"
  if [ "$first" = cat ] && [ "$second" = dog ]; then
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
