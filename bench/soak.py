"""The soak run: the local stack under a steady mixed load, watched for errors and leaks.

For `--minutes` (10) at `--concurrency` (16), each client loops over a mix of what the
service sees: /predict (45%), a small job of 3 photos (10%), status polls of the jobs it
submitted (30%) and bad uploads (15%: empty, text, truncated, a wrong field). Every 10 s it
samples the resident memory of the gateway and the workers (scripts/serve.sh's pid files)
and Redis's `used_memory`. After the load it waits until Redis is back to its starting
level, at most `--settle-s`.

Targets (the reliability issue): zero 5xx; gateway and worker memory within 10% between
minute 2 and the end; Redis memory back to its start within the TTLs. For the last, start
the stack with short TTLs, so that "within the TTLs" fits in a run:

    CATDOG_JOB_TTL_S=180 CATDOG_QUALITY_RECORD_TTL_S=180 make serve
    python bench/soak.py                  # writes bench/results/<date>-soak-<machine>.*

Run it on a quiet machine: it is CPU-bound on 2 cores.
"""

import argparse
import asyncio
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import redis

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from ceiling import KAGGLE  # noqa: E402
from load import latency_summary  # noqa: E402
from reporting import write_results  # noqa: E402
from serving import MemorySampler, bench_key, machine, memory  # noqa: E402

from common.settings import get_settings  # noqa: E402
from training.lineage import git_commit  # noqa: E402

MIX = (("predict", 45), ("job", 10), ("poll", 30), ("bad", 15))
BAD_UPLOADS = ("empty", "text", "truncated", "wrong_field")


@dataclass
class Tally:
    """What the clients saw, by kind of request and by minute."""

    started: float = field(default_factory=time.monotonic)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    per_minute: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    server_errors: list[str] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)

    def record(self, kind: str, status: int, seconds: float, body: str) -> None:
        minute = int((time.monotonic() - self.started) // 60)
        self.statuses[(kind, status)] += 1
        self.per_minute[minute][f"{status // 100}xx"] += 1
        self.latencies[kind].append(seconds)
        if status >= 500 and len(self.server_errors) < 20:
            self.server_errors.append(f"{kind} {status} {body[:200]}")


def stack_and_redis(client: redis.Redis, started: float) -> dict[str, float]:
    """One soak sample: seconds since `started`, Redis's used memory and each process's."""
    used = int(client.info("memory")["used_memory"]) / 2**20
    at = round(time.monotonic() - started, 1)
    return {"t_s": at, "redis_mb": round(used, 1), **memory()}


def bad_upload(kind: str, photo: bytes) -> dict[str, Any]:
    if kind == "empty":
        return {"files": {"file": ("empty.jpg", b"", "image/jpeg")}}
    if kind == "text":
        return {"files": {"file": ("notes.jpg", b"not a photo\n" * 40, "image/jpeg")}}
    if kind == "truncated":
        return {"files": {"file": ("cut.jpg", photo[: len(photo) // 3], "image/jpeg")}}
    return {"files": {"image": ("photo.jpg", photo, "image/jpeg")}}


async def client_loop(
    http: httpx.AsyncClient,
    photos: list[bytes],
    jobs: list[str],
    tally: Tally,
    deadline: float,
    seed: int,
) -> None:
    rng = random.Random(seed)
    kinds, weights = zip(*MIX, strict=True)
    while time.monotonic() < deadline:
        kind = rng.choices(kinds, weights)[0]
        photo = rng.choice(photos)
        started = time.perf_counter()
        try:
            if kind == "predict":
                response = await http.post("/predict", files={"file": ("a.jpg", photo)})
            elif kind == "job":
                files = [("files", (f"{n}.jpg", rng.choice(photos))) for n in range(3)]
                response = await http.post("/jobs", files=files)
                if response.status_code == 202:
                    jobs.append(response.json()["job_id"])
            elif kind == "poll" and jobs:
                response = await http.get(f"/jobs/{rng.choice(jobs)}", params={"limit": 10})
            elif kind == "bad":
                response = await http.post("/predict", **bad_upload(rng.choice(BAD_UPLOADS), photo))
            else:
                continue
        except httpx.HTTPError as exc:
            tally.transport_errors[type(exc).__name__] += 1
            continue
        tally.record(kind, response.status_code, time.perf_counter() - started, response.text)


async def soak(url: str, minutes: float, concurrency: int, headers: dict[str, str]) -> Tally:
    photos = [p.read_bytes() for p in sorted(KAGGLE.glob("*.jpg"))[:200]]
    jobs: list[str] = []
    tally = Tally()
    deadline = time.monotonic() + minutes * 60
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as http:
        await asyncio.gather(
            *(client_loop(http, photos, jobs, tally, deadline, n) for n in range(concurrency))
        )
    return tally


def growth(samples: list[dict[str, float]], name: str, from_s: float) -> float | None:
    """Relative change of `name` between the first sample after `from_s` and the last."""
    values = [s[name] for s in samples if s["t_s"] >= from_s and s.get(name)]
    return round(values[-1] / values[0] - 1, 4) if len(values) >= 2 else None


def settle(sampler: MemorySampler, baseline_mb: float, limit_s: float) -> dict[str, float]:
    """Wait for Redis to be back within 10% (or 1 MB) of where it started."""
    started = time.monotonic()
    while True:
        now = sampler.sample()
        back = now["redis_mb"] <= max(baseline_mb * 1.1, baseline_mb + 1)
        if back or time.monotonic() - started > limit_s:
            return {"after_s": round(time.monotonic() - started), "redis_mb": now["redis_mb"]}
        time.sleep(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--settle-s", type=float, default=600)
    args = parser.parse_args()

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url)
    headers = bench_key()
    started = time.monotonic()
    sampler = MemorySampler(lambda: stack_and_redis(client, started), every_s=10.0)
    baseline = sampler.sample()
    print(f"soak: {args.minutes} min at concurrency {args.concurrency}; start {baseline}")
    with sampler:
        tally = asyncio.run(soak(args.url, args.minutes, args.concurrency, headers))
    settled = settle(sampler, baseline["redis_mb"], args.settle_s)

    processes = sorted({k for s in sampler.samples for k in s} - {"t_s", "redis_mb"})
    growths = {name: growth(sampler.samples, name, from_s=120) for name in processes}
    five_xx = sum(n for (_, status), n in tally.statuses.items() if status >= 500)
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "commit": git_commit(),
        "machine": machine(),
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "job_ttl_s": settings.job_ttl_s,
        "requests": sum(tally.statuses.values()),
        "statuses": {f"{kind} {status}": n for (kind, status), n in sorted(tally.statuses.items())},
        "per_minute": {m: dict(c) for m, c in sorted(tally.per_minute.items())},
        "latency": {kind: latency_summary(v) for kind, v in sorted(tally.latencies.items())},
        "server_errors": tally.server_errors,
        "transport_errors": dict(tally.transport_errors),
        "memory_growth_from_minute_2": growths,
        "redis": {"start_mb": baseline["redis_mb"], **settled},
        "samples": sampler.samples,
        "targets": {
            "zero 5xx": five_xx == 0 and not tally.transport_errors,
            "memory within 10% from minute 2 to the end": all(
                g is not None and abs(g) <= 0.10 for g in growths.values()
            ),
            "Redis back to its start within the TTLs": settled["redis_mb"]
            <= max(baseline["redis_mb"] * 1.1, baseline["redis_mb"] + 1),
        },
    }
    write_results(f"soak-{result['machine']['cores']}core", result, markdown(result))


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Soak run, {result['date']} ({result['machine']['cores']} cores,"
        f" {result['machine']['cpu']}, commit {result['commit']})",
        "",
        f"{result['minutes']:g} minutes at concurrency {result['concurrency']}:"
        f" {result['requests']} requests; job TTL {result['job_ttl_s']} s.",
        "",
        "| target | met |",
        "| --- | --- |",
        *(f"| {name} | {'yes' if ok else 'no'} |" for name, ok in result["targets"].items()),
        "",
        "| request, status | count |",
        "| --- | --- |",
        *(f"| {k} | {n} |" for k, n in result["statuses"].items()),
        "",
        "| process | resident memory change, minute 2 to the end |",
        "| --- | --- |",
        *(
            f"| {name} | {'n/a' if g is None else f'{100 * g:+.1f}%'} |"
            for name, g in result["memory_growth_from_minute_2"].items()
        ),
        "",
        f"Redis: {result['redis']['start_mb']} MB at the start,"
        f" {result['redis']['redis_mb']} MB {result['redis']['after_s']} s after the load.",
        "",
        "| request | p50 ms | p95 ms | p99 ms |",
        "| --- | --- | --- | --- |",
        *(
            f"| {kind} | {v['p50_ms']} | {v['p95_ms']} | {v['p99_ms']} |"
            for kind, v in result["latency"].items()
        ),
        "",
    ]
    if result["server_errors"]:
        lines += ["Server errors seen:", "", *(f"- {e}" for e in result["server_errors"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
