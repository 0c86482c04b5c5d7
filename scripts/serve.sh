#!/usr/bin/env bash
# The local serving stack (`make up` runs it after training):
#   Redis        started here only if none answers at CATDOG_REDIS_URL
#   workers      REALTIME_WORKERS realtime workers for /predict (one per core), each one
#                process of REALTIME_THREADS task threads (CATDOG_MAX_BATCH_SIZE) whose requests share
#                micro-batched forward passes, the cores shared among them (or
#                CATDOG_WORKER_THREADS torch threads each); and BULK_WORKERS bulk workers (1)
#                for jobs, BULK_CONCURRENCY processes each (2; the cores shared among them,
#                or BULK_THREADS torch threads each), at nice BULK_NICE (10) so /predict gets
#                the CPU first. Realtime worker N exports its metrics on WORKER_METRICS_PORT
#                (9100) + N - 1, bulk worker N on the ports after the realtime workers'.
#   gateway      http://127.0.0.1:8000 (GATEWAY_PORT), metrics at /metrics
#   Flower       http://127.0.0.1:5555 (FLOWER_PORT), basic auth CATDOG_FLOWER_BASIC_AUTH
# Every process gets its own process group and a pid file in run/; Ctrl-C here, or
# `make down` from another shell, stops exactly what this script started (scripts/stop.sh).
# Logs (JSON lines) go to run/logs/. Settings: CATDOG_* variables (common/settings.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

RUN_DIR=run
LOG_DIR=$RUN_DIR/logs
CORES=$(nproc)
# One realtime process per core: on a CPU, one process's small-batch forward pass gains
# little from a second thread (bench/results, 2 cores: PyTorch 1 process x 2 threads 23.7
# img/s, 2 x 1 thread 48.1; ONNX Runtime at batch 1, 93 against 79 for one thread), so
# /predict under load needs a second process to use the second core.
REALTIME_WORKERS=${REALTIME_WORKERS:-$CORES}
BULK_WORKERS=${BULK_WORKERS:-1}
BULK_CONCURRENCY=${BULK_CONCURRENCY:-2}
BULK_NICE=${BULK_NICE:-10}
BULK_THREADS=${BULK_THREADS:-0}
GATEWAY_PORT=${GATEWAY_PORT:-8000}
FLOWER_PORT=${FLOWER_PORT:-5555}
WORKER_METRICS_PORT=${WORKER_METRICS_PORT:-9100}
export CATDOG_REDIS_URL=${CATDOG_REDIS_URL:-redis://127.0.0.1:6379/0}
export CATDOG_MODEL_URI=${CATDOG_MODEL_URI:-models:/catdog@champion}
export PYTHONUNBUFFERED=1

mkdir -p "$LOG_DIR"
for pidfile in "$RUN_DIR"/*.pid; do
  [[ -e $pidfile ]] || continue
  if kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "catdog: already running ($pidfile); run 'make down' first" >&2
    exit 1
  fi
  rm -f "$pidfile"
done

start() {  # start NAME COMMAND...: in the background, in its own session and process group
  local name=$1  # (so Ctrl-C reaches only this script, which then stops it cleanly)
  shift
  setsid "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

stop_all() {
  trap - INT TERM EXIT
  echo
  bash scripts/stop.sh
}
trap stop_all INT TERM EXIT

setting() {  # the value of one field of common.settings (secrets revealed)
  python -c 'import sys; from common.settings import get_settings
v = getattr(get_settings(), sys.argv[1]); print(getattr(v, "get_secret_value", lambda: v)())' "$1"
}

redis_answers() {
  python - "$CATDOG_REDIS_URL" <<'PY' 2>/dev/null
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

if redis_answers; then
  echo "catdog: using the Redis at $CATDOG_REDIS_URL"
else
  read -r host port < <(python -c 'import sys; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); print(u.hostname or "127.0.0.1", u.port or 6379)' "$CATDOG_REDIS_URL")
  if [[ $host != 127.0.0.1 && $host != localhost ]]; then
    echo "catdog: no Redis answers at $CATDOG_REDIS_URL and it is not local" >&2
    exit 1
  fi
  command -v redis-server >/dev/null || { echo "catdog: redis-server is not installed (make system-deps)" >&2; exit 1; }
  echo "catdog: starting redis-server on port $port"
  start redis redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no
  for _ in $(seq 50); do redis_answers && break; sleep 0.2; done
  redis_answers || { echo "catdog: redis-server did not start; see $LOG_DIR/redis.log" >&2; exit 1; }
fi

start_worker() {  # start_worker NAME METRICS_PORT NICE TORCH-THREADS CELERY-ARGS...
  # Each worker's pool processes write their metrics under a directory of its own, which its
  # main process merges on its own port; prometheus_client reads the variable at import, so
  # it is set for this worker's processes only (not Flower, not the gateway).
  local name=$1 port=$2 nice=$3 threads=$4
  shift 4
  local metrics_dir="$RUN_DIR/prometheus/$name"
  rm -rf "$metrics_dir" && mkdir -p "$metrics_dir"
  start "$name" env PROMETHEUS_MULTIPROC_DIR="$PWD/$metrics_dir" \
    CATDOG_WORKER_METRICS_PORT="$port" CATDOG_WORKER_NICE="$nice" \
    CATDOG_WORKER_THREADS="$threads" \
    celery -A worker.celery_app:app worker --hostname "$name@%h" --loglevel INFO "$@"
}
# A realtime worker holds as many requests as one forward pass takes: on a CPU its process
# has one core, and requests held beyond that only contend with the pass for it. At
# concurrency 32 on 2 cores, 4 threads (the default batch) answered 83.4 img/s against 77.6
# for 16 (means of 5 alternating runs each, AMD EPYC VM, 2026-12-07; bench/README.md).
REALTIME_THREADS=${REALTIME_THREADS:-$(setting max_batch_size)}
realtime_torch_threads=${CATDOG_WORKER_THREADS:-$(( CORES / REALTIME_WORKERS > 0 ? CORES / REALTIME_WORKERS : 1 ))}
for i in $(seq "$REALTIME_WORKERS"); do
  start_worker "realtime$i" $((WORKER_METRICS_PORT + i - 1)) 0 "$realtime_torch_threads" \
    -Q "$(setting realtime_queue)" --pool threads --concurrency "$REALTIME_THREADS"
done
for i in $(seq "$BULK_WORKERS"); do
  start_worker "bulk$i" $((WORKER_METRICS_PORT + REALTIME_WORKERS + i - 1)) "$BULK_NICE" "$BULK_THREADS" \
    -Q "$(setting bulk_queue)" --concurrency "$BULK_CONCURRENCY"
done
# API keys on (the default): reuse or make the local key, so the page and the client work.
api_key="$(python scripts/local-api-key.py)"
start gateway python -m gateway --host 127.0.0.1 --port "$GATEWAY_PORT" --no-access-log
auth=$(setting flower_basic_auth)
start flower celery -A worker.celery_app:app flower --address=127.0.0.1 --port="$FLOWER_PORT" \
  --basic-auth="$auth"

bash scripts/wait-for-http.sh "http://127.0.0.1:$GATEWAY_PORT/livez" 60
echo "catdog: waiting for the workers to load the model ($CATDOG_MODEL_URI)..."
if ! bash scripts/wait-for-http.sh "http://127.0.0.1:$GATEWAY_PORT/readyz" 300; then
  curl -s "http://127.0.0.1:$GATEWAY_PORT/readyz" >&2 || true
  echo >&2
  echo "catdog: not ready; see $LOG_DIR/" >&2
  exit 1
fi
cat <<MSG

catdog is up:
  API        http://127.0.0.1:$GATEWAY_PORT        (docs: http://127.0.0.1:$GATEWAY_PORT/docs)
  readiness  http://127.0.0.1:$GATEWAY_PORT/readyz
  metrics    http://127.0.0.1:$GATEWAY_PORT/metrics, workers http://127.0.0.1:$WORKER_METRICS_PORT/metrics (+1 per worker)
  Flower     http://127.0.0.1:$FLOWER_PORT        (basic auth: CATDOG_FLOWER_BASIC_AUTH)
  logs       $LOG_DIR/
MSG
if [[ -n "$api_key" ]]; then
  cat <<MSG
  API key    $api_key   (kept in $RUN_DIR/api-key; the web page asks for it once)
Try: CATDOG_API_KEY=\$(cat $RUN_DIR/api-key) python -m client predict ../shared/data/petimages-180/Cat/1.jpg
MSG
else
  echo "Try: python -m client predict ../shared/data/petimages-180/Cat/1.jpg"
fi
cat <<MSG
Ctrl-C (or 'make down') stops everything.
MSG

# Stay in the foreground; if any process dies, say which and stop the rest.
shopt -s nullglob
while sleep 2; do
  pidfiles=("$RUN_DIR"/*.pid)
  if (( ${#pidfiles[@]} == 0 )); then  # `make down` from another shell
    trap - INT TERM EXIT
    exit 0
  fi
  for pidfile in "${pidfiles[@]}"; do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      name=$(basename "$pidfile" .pid)
      echo "catdog: $name exited; last lines of $LOG_DIR/$name.log:" >&2
      tail -n 20 "$LOG_DIR/$name.log" >&2 || true
      exit 1
    fi
  done
done
