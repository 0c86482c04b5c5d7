"""Where a lone /predict's time goes (`make up` first): one client, one request at a time,
each request's time split by the three clocks that see it.

- the client's (the lean client of `http_client`), from the first byte sent to the last
  byte read;
- the gateway's `latency_ms` (the response field: the route handler, from the upload read
  to the answer built);
- the worker's `latency_ms` (its "prediction" log line, joined by `prediction_id`: the
  upload read from Redis, decoded, preprocessed and classified).

So: client - gateway is HTTP, the middlewares, the API key and the response; gateway -
worker is the hand-off (the upload and its task into Redis, Celery's delivery, the reply
back). The in-process batch-1 latency beside it (bench/ceiling.py, one thread, the stack's
runtime) is what the service adds to.

Beside it, the same in-process figure with each photo timed after as long an idle as the
workers had between their requests (read from their log lines' timestamps): how much of the
gap is the machine waking up (caches, an idle vCPU), which photos back to back never pay.

    python bench/latency_breakdown.py                 # 300 requests
    python bench/latency_breakdown.py --requests 100

Writes bench/results/<date>-latency-breakdown-<machine>.json and .md.
"""

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from ceiling import photos  # noqa: E402
from http_client import Connection, upload_request  # noqa: E402
from reporting import cpu_line, machine_label, write_results  # noqa: E402
from serving import (  # noqa: E402
    RUN,
    add_settle_option,
    bench_key,
    ceiling_alone,
    load_note,
    log_entries,
    settled_machine,
)

PARTS = ("client", "gateway", "worker")


@dataclass(frozen=True)
class WorkerLine:
    worker: str  # its log's name: realtime1, realtime2, ...
    at: datetime  # when the line was written: just after the answer left
    latency_ms: float


def worker_lines() -> dict[str, WorkerLine]:
    """`prediction_id` -> the worker's "prediction" log line, from the realtime workers' logs."""
    found: dict[str, WorkerLine] = {}
    for worker, entry in log_entries(RUN / "logs", "realtime*.log"):
        if entry.get("message") == "prediction" and "latency_ms" in entry:
            found[entry["prediction_id"]] = WorkerLine(
                worker, datetime.fromisoformat(entry["timestamp"]), float(entry["latency_ms"])
            )
    return found


def measure(url: str, datas: list[bytes], requests: int) -> tuple[list[dict[str, float]], float]:
    """One row of the three clocks per request, and the median time a worker sat idle between
    two of its requests (the lone requests go to the workers in turn)."""
    timed = asyncio.run(_timed_requests(url, datas, requests))
    time.sleep(1)  # the last log lines
    lines = worker_lines()
    rows = [
        {"client": c, "gateway": g, "worker": lines[pid].latency_ms}
        for pid, c, g in timed
        if pid in lines
    ]
    return rows, _median_idle_ms([lines[pid] for pid, _, _ in timed if pid in lines])


def _median_idle_ms(lines: list[WorkerLine]) -> float:
    idle = []
    for worker in {line.worker for line in lines}:
        own = sorted((line for line in lines if line.worker == worker), key=lambda x: x.at)
        idle += [
            1000 * (later.at - earlier.at).total_seconds() - later.latency_ms
            for earlier, later in itertools.pairwise(own)
        ]
    return round(statistics.median(idle), 1) if idle else 0.0


async def _timed_requests(
    url: str, datas: list[bytes], requests: int
) -> list[tuple[str, float, float]]:
    """(prediction_id, the client's ms, the gateway's ms) of each request, one at a time."""
    prepared = [upload_request(url, "/predict", data, bench_key()) for data in datas]
    connection = Connection(url)
    timed = []
    try:
        for request in prepared[:20]:  # the connection, the workers' caches: untimed
            (await connection.send(request)).raise_for_status()
        for n in range(requests):
            started = time.perf_counter()
            answer = await connection.send(prepared[n % len(prepared)])
            elapsed_ms = 1000 * (time.perf_counter() - started)
            answer.raise_for_status()
            body = answer.json()
            timed.append((body["prediction_id"], elapsed_ms, float(body["latency_ms"])))
    finally:
        await connection.close()
    return timed


def in_process_batch1_ms(idle_ms: float = 0.0) -> float:
    """bench/ceiling.py's batch 1 on one thread; with `idle_ms`, each photo after that long
    idle, as a worker meets its lone requests."""
    result = ceiling_alone("--threads", "1", "--batch", "1", "--idle-ms", str(idle_ms))
    return float(result["full"]["1"]["ms_per_image"])


def summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    def p50(values: list[float]) -> float:
        return round(statistics.median(values), 2)

    return {
        "requests": len(rows),
        "p50_ms": {part: p50([r[part] for r in rows]) for part in PARTS},
        "p50_ms_outside_the_gateway": p50([r["client"] - r["gateway"] for r in rows]),
        "p50_ms_hand_off": p50([r["gateway"] - r["worker"] for r in rows]),
    }


def markdown(result: dict[str, Any]) -> str:
    s, m = result["summary"], result["machine"]
    p = s["p50_ms"]
    return "\n".join(
        [
            f"# Where a lone /predict's time goes, {result['date']}",
            "",
            f"{cpu_line(m)}, {m['cores']} cores{load_note(m)}; commit {m['commit']}; {s['requests']} requests "
            "one at a time; medians in ms.",
            "",
            "| part | p50 ms |",
            "| --- | --- |",
            f"| the client's whole request | {p['client']} |",
            f"| outside the gateway's handler (HTTP, middlewares, API key, response) "
            f"| {s['p50_ms_outside_the_gateway']} |",
            f"| the hand-off (upload and task into Redis, Celery's delivery, the reply) "
            f"| {s['p50_ms_hand_off']} |",
            f"| the worker (read, decode, preprocess, forward pass) | {p['worker']} |",
            f"| in-process batch 1, one thread (bench/ceiling.py) | {result['in_process_ms']} |",
            f"| the same, each photo after {result['worker_idle_ms']} ms idle (a worker's median "
            f"wait between its lone requests) | {result['in_process_after_idle_ms']} |",
            "",
            "The second in-process figure is not a target: it shows how much of the gap is the "
            "machine waking from idle, which the first (photos back to back) never pays.",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("CATDOG_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--requests", type=int, default=300)
    add_settle_option(parser)
    args = parser.parse_args()
    os.chdir(BENCH.parent)
    described = settled_machine(args.settle_s)
    datas = [p.read_bytes() for p in photos(200, offset=500)]
    rows, idle_ms = measure(args.url, datas, args.requests)
    if not rows:
        raise SystemExit(f"no worker log line matched; are the workers' logs in {RUN}/logs?")
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": described,
        "summary": summary(rows),
        "in_process_ms": in_process_batch1_ms(),
        "worker_idle_ms": idle_ms,
        "in_process_after_idle_ms": in_process_batch1_ms(idle_ms),
        "requests": rows,
    }
    write_results(f"latency-breakdown-{machine_label(result['machine'])}", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
