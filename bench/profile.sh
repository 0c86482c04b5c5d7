#!/usr/bin/env bash
# Flame graphs of the running stack (`make up` first), sampled by py-spy for DURATION seconds
# (20) under one of two loads:
#   bash bench/profile.sh          /predict at CONCURRENCY (32) from bench/load.py's client:
#                                  the gateway and the first realtime worker;
#   LOAD=job bash bench/profile.sh one 1,000-photo job: the first bulk worker, its main
#                                  process and its pool processes together.
# Writes bench/results/<date>-flame-{gateway,realtime}.svg or <date>-flame-bulk.svg.
# py-spy comes with requirements/dev.txt; it needs ptrace (root here).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
CONCURRENCY=${CONCURRENCY:-32}
LOAD=${LOAD:-predict}
out="bench/results/$(date +%F)-flame"
export PATH="$PWD/.venv/bin:$PATH"

if [[ $LOAD == job ]]; then
  python - <<'PY' &
import asyncio, sys
sys.path[:0] = ["bench", "."]
from ceiling import photos
from load import job_run
from serving import bench_key

print(asyncio.run(job_run("http://127.0.0.1:8000", photos(1000), bench_key())).summary())
PY
  sleep 1  # the upload
  py-spy record --pid "$(cat run/bulk1.pid)" --subprocesses --duration "$DURATION" \
    --output "$out-bulk.svg" --nonblocking
  wait
  echo "flame graph: $out-bulk.svg"
  exit 0
fi

python - "$DURATION" "$CONCURRENCY" <<'PY' &
import asyncio, pathlib, sys
sys.path[:0] = ["bench", "."]
from ceiling import photos
from load import predict_load
from serving import bench_key

seconds, concurrency = float(sys.argv[1]) + 3, int(sys.argv[2])
datas = [p.read_bytes() for p in photos(200, offset=500)]

async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    run = await predict_load("http://127.0.0.1:8000", datas, concurrency, 0, bench_key(), stop)
    print(run.summary())

asyncio.run(main())
PY

sleep 2
py-spy record --pid "$(cat run/gateway.pid)" --duration "$DURATION" --output "$out-gateway.svg" --nonblocking &
py-spy record --pid "$(cat run/realtime1.pid)" --duration "$DURATION" --output "$out-realtime.svg" --nonblocking
wait
echo "flame graphs: $out-gateway.svg, $out-realtime.svg"
