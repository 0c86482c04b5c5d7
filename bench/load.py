"""Load for the serving harness: /predict at a fixed concurrency, one bulk job from its first
byte to its last result, and the resident memory of the processes under test."""

import asyncio
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from http_client import Connection, upload_request

from common.wire import TERMINAL

ENDED = {status.value for status in TERMINAL}


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    ms = [1000 * s for s in latencies_s]
    return {
        "p50_ms": round(statistics.median(ms), 2) if ms else float("nan"),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
    }


@dataclass
class PredictRun:
    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        ok = self.statuses.get(200, 0)
        return {
            "concurrency": self.concurrency,
            "requests": sum(self.statuses.values()),
            "ok": ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "images_per_s": round(ok / self.seconds, 2) if self.seconds else 0.0,
            **latency_summary(self.latencies_s),
        }


async def predict_load(
    url: str,
    datas: Sequence[bytes],
    concurrency: int,
    requests: int,
    headers: dict[str, str] | None = None,
    stop: asyncio.Event | None = None,
) -> PredictRun:
    """`requests` POST /predict calls, `concurrency` at a time, cycling through `datas`
    (or, with `stop`, until it is set), sent by the lean client of `http_client`.

    Each caller first opens its connection with one untimed call, and the clock starts when
    all have: a throughput figure of the steady state, not of 32 TCP handshakes."""
    run = PredictRun(concurrency)
    prepared = [upload_request(url, "/predict", data, headers) for data in datas]
    counter = iter(range(10**9 if stop else requests))
    connected = asyncio.Barrier(concurrency)
    clock: list[float] = []

    async def one_caller() -> None:
        connection = Connection(url)
        try:
            await connection.send(prepared[0])
            if await connected.wait() == 0:
                clock.append(time.perf_counter())
            for n in counter:
                if stop is not None and stop.is_set():
                    return
                started = time.perf_counter()
                answer = await connection.send(prepared[n % len(prepared)])
                run.latencies_s.append(time.perf_counter() - started)
                run.statuses[answer.status] += 1
        finally:
            await connection.close()

    await asyncio.gather(*(one_caller() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - clock[0]
    return run


@dataclass
class JobRun:
    total: int
    upload_s: float
    seconds: float  # first byte of the upload to the last result
    done: int
    failed: int
    status: str
    job_id: str = ""
    started_at: float = 0.0  # the upload's first byte, epoch seconds (to meet the logs' clock)

    def summary(self) -> dict[str, Any]:
        return {
            "photos": self.total,
            "upload_s": round(self.upload_s, 2),
            "seconds": round(self.seconds, 2),
            "images_per_s": round(self.done / self.seconds, 2),
            "done": self.done,
            "failed": self.failed,
            "status": self.status,
        }


# How often the harness asks whether its job has ended: as a progress bar would, not in a
# tight loop. At 0.1 s the polls themselves cost 8 ms of CPU each (client and gateway) on the
# 2-core VM, 4% of the machine the job runs on (bench/README.md). The job's end is read from
# its `finished_at` (the worker's clock at its last result), so polling less does not lengthen
# the measured time.
POLL_S = 0.5


async def job_run(url: str, paths: Sequence[Path], headers: dict[str, str]) -> JobRun:
    """Submit one job of `paths`, then poll until it ends."""
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
        started_at, started = time.time(), time.perf_counter()
        response = await client.post("/jobs", files=files)
        upload_s = time.perf_counter() - started
        response.raise_for_status()
        job_id = response.json()["job_id"]
        while True:
            body = (await client.get(f"/jobs/{job_id}", params={"limit": 1})).json()
            if body["status"] in ENDED:
                break
            await asyncio.sleep(POLL_S)
    seconds = _ended_at(body, started_at + time.perf_counter() - started) - started_at
    return JobRun(
        len(paths),
        upload_s,
        seconds,
        body["done"],
        body["failed"],
        body["status"],
        job_id,
        started_at,
    )


def _ended_at(body: dict[str, Any], seen_at: float) -> float:
    """When the job's last result was written (epoch seconds), else when the client saw it end."""
    ended = body.get("finished_at") or body.get("cancelled_at")
    return datetime.fromisoformat(ended).timestamp() if ended else seen_at


def tree_pids(root: int) -> list[int]:
    """`root` and every process below it (a worker's pool children)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo += [int(child) for child in children.read_text().split()]
            except OSError:  # the task ended meanwhile
                continue
    return found


def cpu_s(pid: int) -> float:
    """CPU time (user + system, seconds) spent so far by `pid` and its live children; 0.0 for
    a process that is gone."""
    return sum(own_cpu_s(p) for p in tree_pids(pid))


def own_cpu_s(pid: int) -> float:
    """CPU time (user + system, seconds) spent so far by `pid` alone; 0.0 once it is gone."""
    try:
        # The fields after the command's closing parenthesis: utime and stime are the 12th
        # and 13th of them (proc(5)).
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> dict[str, float]:
    """The machine's CPU time so far, all cores together (seconds): busy, idle and stolen
    (by the hypervisor, on a VM), from the first line of /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle and iowait
    steal = values[7] if len(values) > 7 else 0
    return {
        "busy": (sum(values[:8]) - idle - steal) / tick,
        "idle": idle / tick,
        "steal": steal / tick,
    }


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its children, in MB."""
    total_kb = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb / 1024, 1)
