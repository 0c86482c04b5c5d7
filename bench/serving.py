"""The serving harness (`make bench`, against the stack `make up` started): catdog against
the in-process ceiling and against a peer-style server, on this machine, in one run.

1. Ceiling: bench/ceiling.py in a fresh process with the served model (2 threads, then 1
   thread, batch sizes 1-32), and two 1-thread processes at once at one thread's best batch
   size. Measured again at the end: the targets use the mean of the two (`reference`).
2. The running stack: /predict at concurrency 1, 8 and 32; one 1,000-photo job from the
   first byte of its upload to its last result, with /predict (concurrency 1) running beside
   it; gateway and worker resident memory before, during and after; worker memory over
   10,000 predictions.
3. The peer-style server (bench/peer_server.py), same model and preprocessing, at the same
   concurrencies: on the stack's runtime (the comparison of serving alone) and, where that
   is not PyTorch, on PyTorch too (how the public projects of this assignment serve).

Writes bench/results/<date>-serving-<cores>core-<cpu vendor>.json and .md (a later run of
the same day and machine adds -2, -3...: each run is a row of the history), and the
throughput and p95 plot (.png), prints each target of the performance issue as met or not
met, and rewrites the table of every run so far (bench/history.py).

    python bench/serving.py                   # everything (about 10 minutes on 2 cores)
    python bench/serving.py --quick           # fewer requests, for trying the harness
"""

import argparse
import asyncio
import itertools
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from ceiling import KAGGLE, photos  # noqa: E402
from history import write_history  # noqa: E402
from load import cpu_s, job_run, predict_load, rss_mb  # noqa: E402
from reporting import RESULTS, cpu_line, machine_label, write_results  # noqa: E402

from training.lineage import git_commit  # noqa: E402

RUN = ROOT / "run"
# /predict calls per concurrency, for catdog and the peer alike: enough that the last
# callers' tail (a run ends one caller at a time) is a small part of the run. At 800 calls,
# timed from the first handshake, the concurrency-32 point read 0.67 of the ceiling while
# 10,000 calls at the same concurrency, later in the same run, read 0.74 (2026-12-03, AMD).
CURVE_REQUESTS = {1: 300, 8: 600, 32: 1600}
# A machine still busy reads slow: two minutes after `make up`'s training ended, a lone
# /predict took 28.9 ms and fifteen minutes later 21-22 (bench/README.md, 2026-12-07). The
# harnesses first wait for the 1-minute load average to fall below QUIET_LOAD per core
# (an idle stack sits near 0.1 on 2 cores), and record the load they started at.
QUIET_LOAD = 0.25
SETTLE_S = 300.0


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def machine() -> dict[str, Any]:
    info: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if not name.strip():
            break  # the first processor's block is enough
        info.setdefault(name.strip(), value.strip())
    return {
        "cpu": info.get("model name", "unknown"),
        # Two VMs both named "AMD EPYC" ran this model 2.4 times apart (bench/README.md): the
        # family, model and stepping tell the generations apart.
        "cpu_id": "family {} model {} stepping {}".format(
            *(info.get(k, "?") for k in ("cpu family", "model", "stepping"))
        ),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "commit": git_commit(),  # "-dirty" when tracked files differ from it
    }


def settle(max_s: float = SETTLE_S, every_s: float = 5.0) -> float:
    """Wait, at most `max_s`, until the machine is quiet; its 1-minute load average then."""
    cores = len(os.sched_getaffinity(0))
    deadline = time.monotonic() + max_s
    load = os.getloadavg()[0]
    if load >= QUIET_LOAD * cores:
        print(f"waiting for a quiet machine: load average {load:.2f} on {cores} cores", flush=True)
    while load >= QUIET_LOAD * cores and time.monotonic() < deadline:
        time.sleep(every_s)
        load = os.getloadavg()[0]
    if load >= QUIET_LOAD * cores:
        print(f"still busy after {max_s:g} s (load {load:.2f}); measuring anyway", flush=True)
    return round(load, 2)


def settled_machine(max_s: float = SETTLE_S) -> dict[str, Any]:
    """`machine()` once the machine is quiet (`settle`), with the load it was measured at."""
    load = settle(max_s)
    return {**machine(), "load_at_start": load}


def add_settle_option(parser: argparse.ArgumentParser) -> None:
    """`--settle-s`, read by `settled_machine`: the harnesses' one way to say how long to wait."""
    parser.add_argument(
        "--settle-s",
        type=float,
        default=SETTLE_S,
        help=f"wait at most this long (seconds, default {SETTLE_S:g}) for the 1-minute load "
        f"average to fall below {QUIET_LOAD} per core before measuring",
    )


def load_note(described: dict[str, Any]) -> str:
    """`, 1-minute load average 0.12 at the start`, where the results recorded it."""
    load = described.get("load_at_start")
    return "" if load is None else f", 1-minute load average {load} at the start"


def ceiling_alone(*args: str) -> dict[str, Any]:
    """bench/ceiling.py with `args`, in a fresh process so the stack's state cannot help, with
    the runtime the stack's workers run."""
    run = subprocess.run(
        [python(), str(BENCH / "ceiling.py"), *args, "--json"],
        cwd=ROOT,
        env=ceiling_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def ceiling_env() -> dict[str, str]:
    return {**os.environ, "CATDOG_INFERENCE_RUNTIME": stack_runtime()}


def ceiling() -> dict[str, Any]:
    """The in-process figures (`ceiling_alone`, 2 threads and 1 thread), and two 1-thread
    processes at once at the best batch of one thread."""
    one = ceiling_alone("--threads", "2")
    # One thread has its own best batch (with ONNX Runtime here it is small, with two
    # threads large), and it is the batch two 1-thread processes must run at: at two threads'
    # best, the pair ran slower than the bulk workers' batches of 4, and a job measured 1.1 x
    # this "ceiling" (2026-12-03, bench/README.md).
    single = ceiling_alone("--threads", "1")
    best = _best_batch(one)
    best_single = _best_batch(single)
    two_procs = two_processes(best_single)
    return {
        "one_process_2_threads": one,
        "one_process_1_thread": single,
        "best_batch": int(best),
        "best_batch_1_thread": int(best_single),
        "best_one_process": one["full"][best]["images_per_s"],
        "two_processes_1_thread": two_procs,
        "best": max(one["full"][best]["images_per_s"], two_procs),
        # The batch-1 reference is the faster of one thread (what each realtime worker runs)
        # and two: on some 2-core machines a second thread speeds a lone image up, on others
        # (bench/README.md) it slows it down.
        "batch1_ms": min(one["full"]["1"]["ms_per_image"], single["full"]["1"]["ms_per_image"]),
        "batch1_ms_by_threads": {
            "1": single["full"]["1"]["ms_per_image"],
            "2": one["full"]["1"]["ms_per_image"],
        },
    }


def two_processes(batch: str) -> float:
    """Images/s of two 1-thread processes running bench/ceiling.py at `batch` over one shared
    window (both start on one signal, `ceiling.py --together`), on different photos: what two
    bulk worker processes could do at most."""
    pair = [
        subprocess.Popen(
            [
                python(),
                str(BENCH / "ceiling.py"),
                *("--threads", "1", "--batch", batch, "--offset", str(200 * n)),
                *("--together", "--json"),
            ],
            cwd=ROOT,
            env=ceiling_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        for process in pair:  # both loaded and warm
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"bench/ceiling.py --together exited with {process.wait()}")
        for process in pair:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        runs = [json.loads(process.communicate()[0]) for process in pair]
    finally:
        for process in pair:  # one that failed must not leave the other waiting for its line
            if process.poll() is None:
                process.kill()
    return round(sum(run["images_per_s"] for run in runs), 2)


def _best_batch(sweep: dict[str, Any]) -> str:
    """The batch size of a ceiling.py sweep with the most decode + preprocess + forward img/s."""
    return max(sweep["full"], key=lambda size: sweep["full"][size]["images_per_s"])


def log_entries(logs: Path, pattern: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(the log's name, the entry) for each JSON line of the stack's logs matching `pattern`
    (`realtime*.log`), in file order; Celery's own plain-text lines are skipped."""
    for log in sorted(logs.glob(pattern)):
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                yield log.stem, entry


def pid_of(name: str) -> int | None:
    path = RUN / f"{name}.pid"
    return int(path.read_text()) if path.exists() else None


def environ_of(name: str) -> dict[str, str]:
    """The environment a stack process started with (what serve.sh gave it), or {}."""
    pid = pid_of(name)
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes() if pid else b""
    except OSError:
        return {}
    pairs = (item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
    return dict(pairs)


def stack_runtime() -> str:
    """What runs the realtime workers' forward passes (CATDOG_INFERENCE_RUNTIME)."""
    from common.settings import Settings

    default = Settings.model_fields["inference_runtime"].default
    return environ_of("realtime1").get("CATDOG_INFERENCE_RUNTIME", default)


def processes() -> dict[str, int]:
    """The stack's processes (scripts/serve.sh's pid files): gateway and workers."""
    found = {}
    for path in sorted(RUN.glob("*.pid")):
        if path.stem == "gateway" or path.stem.startswith(("realtime", "bulk", "worker")):
            found[path.stem] = int(path.read_text())
    return found


def memory() -> dict[str, float]:
    return {name: rss_mb(pid) for name, pid in processes().items()}


def worker_option(name: str, option: str) -> str | None:
    """An option a stack worker was started with (`--concurrency`), read from its command
    line: what serve.sh gave it, whatever this process's environment says."""
    pid = pid_of(name)
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0") if pid else []
    except OSError:
        return None
    for arg, value in itertools.pairwise(args):
        if arg == option:
            return value
    return None


def redis_pid() -> int | None:
    """The pid of the stack's Redis (its INFO names it) when it runs on this machine."""
    import redis

    from common.settings import get_settings

    try:
        client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=2)
        pid = int(client.info("server")["process_id"])
        running = Path(f"/proc/{pid}/comm").read_text()
    except (redis.RedisError, KeyError, ValueError, OSError):
        return None
    return pid if running.startswith("redis") else None  # not a pid of another namespace


def stack_pids() -> dict[str, int]:
    """The processes whose CPU a /predict run of the stack spends: `processes()` and Redis."""
    found = processes()
    if (pid := redis_pid()) is not None:
        found["redis"] = pid
    return found


class CpuMeter:
    """CPU time spent over a block by named processes (with their pool children) and by
    this process, the load client: `per_request(n)` is each one's ms per answered request."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._end: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        spent = {name: cpu_s(pid) for name, pid in self.pids.items()}
        return {**spent, "client": own.ru_utime + own.ru_stime}

    def __enter__(self) -> "CpuMeter":
        self._start = self._now()
        return self

    def __exit__(self, *_: object) -> None:
        self._end = self._now()

    def per_request(self, answered: int) -> dict[str, float]:
        return {
            name: round(1000 * (self._end[name] - start) / max(1, answered), 2)
            for name, start in self._start.items()
        }


T = TypeVar("T")


class Sampler(Generic[T]):
    """`sample()` every `every_s`, in a thread, while the block runs: `samples`."""

    def __init__(self, sample: Callable[[], T], every_s: float) -> None:
        self.sample = sample
        self.every_s = every_s
        self.samples: list[T] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.every_s)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class MemorySampler(Sampler[dict[str, float]]):
    """The resident memory of the stack's processes (or another `sample()`) every `every_s`."""

    def __init__(
        self, sample: Callable[[], dict[str, float]] = memory, every_s: float = 0.5
    ) -> None:
        super().__init__(sample, every_s)

    def peak(self) -> dict[str, float]:
        names = {name for sample in self.samples for name in sample}
        return {n: max(s.get(n, 0.0) for s in self.samples) for n in sorted(names)}


def bench_key() -> dict[str, str]:
    """Headers for a key of the bench's own whose limits the load cannot reach."""
    from client.keys import create_key
    from common.settings import get_settings
    from common.store.ops import Store

    settings = get_settings()
    if settings.auth == "off":
        return {}
    store = Store.from_url(settings.redis_url)
    secret, _ = create_key(
        store,
        "bench",
        expires_at=time.time() + 24 * 3600,
        rate_limit_rps=100_000.0,
        rate_limit_burst=100_000,
        max_active_jobs=100,
        max_stored_bytes=10 * 2**30,
    )
    return {"Authorization": f"Bearer {secret}"}


def curve(
    url: str,
    datas: list[bytes],
    requests: dict[int, int],
    headers: dict[str, str],
    pids: dict[str, int],
) -> list[dict[str, Any]]:
    """/predict at each concurrency, with the CPU that `pids` and the client spent on it."""
    points = []
    asyncio.run(predict_load(url, datas, 4, 40, headers))  # warm connections and caches
    for concurrency, count in requests.items():
        with CpuMeter(pids) as cpu:
            run = asyncio.run(predict_load(url, datas, concurrency, count, headers))
        summary = run.summary()
        points.append({**summary, "cpu_ms_per_request": cpu.per_request(summary["ok"])})
        print(f"  concurrency {concurrency}: {points[-1]}", flush=True)
    return points


async def job_beside_predict(
    url: str, paths: list[Path], datas: list[bytes], headers: dict[str, str]
) -> tuple[Any, Any]:
    stop = asyncio.Event()

    async def job() -> Any:
        try:
            return await job_run(url, paths, headers)
        finally:
            stop.set()

    return await asyncio.gather(job(), predict_load(url, datas, 1, 0, headers, stop=stop))


def stack(url: str, quick: bool, soak: int) -> dict[str, Any]:
    headers = bench_key()
    # /predict sends photos the job does not hold: cats and dogs numbered 500 to 599.
    datas = [p.read_bytes() for p in photos(200, offset=500)]
    scale = 4 if quick else 1
    requests = {c: n // scale for c, n in CURVE_REQUESTS.items()}
    print("catdog /predict:", flush=True)
    before = memory()
    points = curve(url, datas, requests, headers, stack_pids())
    job_photos = photos(200 if quick else 1000)
    print(f"catdog: one {len(job_photos)}-photo job alone", flush=True)
    with MemorySampler() as sampler:
        job = asyncio.run(job_run(url, job_photos, headers))
    print(f"  {job.summary()}", flush=True)
    print("catdog: the same job again, /predict (concurrency 1) beside it", flush=True)
    shared_job, beside = asyncio.run(job_beside_predict(url, job_photos, datas, headers))
    after = memory()
    result: dict[str, Any] = {
        "predict": points,
        "job": job.summary(),
        "job_beside_predict": shared_job.summary(),
        "predict_during_job": beside.summary(),
        "memory_mb": {"before": before, "peak_during_job": sampler.peak(), "after": after},
    }
    print(f"  job: {result['job_beside_predict']}", flush=True)
    print(f"  /predict: {result['predict_during_job']}", flush=True)
    if soak:
        print(f"catdog: {soak} predictions for worker memory", flush=True)
        with MemorySampler() as soak_sampler:
            run = asyncio.run(predict_load(url, datas, 32, soak, headers))
        samples = soak_sampler.samples
        result["soak"] = {
            **run.summary(),
            "memory_mb_first": samples[min(len(samples) - 1, 4)],  # after two seconds of load
            "memory_mb_last": samples[-1],
        }
        print(f"  {result['soak']}", flush=True)
    return result


def peer(quick: bool, runtime: str) -> list[dict[str, Any]]:
    """The peer-style server's /predict curve, its forward pass run by `runtime`."""
    with socket.socket() as probe:  # a free port for the peer server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [python(), str(BENCH / "peer_server.py"), "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "CATDOG_INFERENCE_RUNTIME": runtime},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        datas = [p.read_bytes() for p in photos(200, offset=500)]  # as for catdog
        scale = 4 if quick else 1
        print(f"peer-style server /predict ({runtime}):", flush=True)
        requests = {c: n // scale for c, n in CURVE_REQUESTS.items()}
        return curve(url, datas, requests, {}, {"peer": server.pid})
    finally:
        server.terminate()
        server.wait(30)


def reference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """What the targets compare with: the mean of the ceiling measured before the stack's
    figures and after the peer's. This VM's own speed drifts by 10-15 % within minutes
    (the same 32-client load took 30 and 35 ms of CPU per request twenty minutes apart,
    2026-12-03), so a ceiling measured once, minutes before, can flatter or wrong the
    figures it divides."""
    return {key: round((before[key] + after[key]) / 2, 3) for key in ("best", "batch1_ms")}


def at(points: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    return next(p for p in points if p["concurrency"] == concurrency)


def verdicts(
    ceil: dict[str, Any],
    ours: dict[str, Any],
    theirs: list[dict[str, Any]],
    theirs_torch: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    c1, c32 = at(ours["predict"], 1), at(ours["predict"], 32)
    job = ours["job"]
    peers = [("realtime: /predict c32 >= 3 x peer c32", theirs)]
    if theirs_torch is not None:
        # The same target against the peer as the public projects run it (PyTorch): it
        # counts the engine catdog chose as well as its serving, so it is reported apart.
        peers.append(("realtime: /predict c32 >= 3 x peer c32, the peer on PyTorch", theirs_torch))
    rows = [
        (
            "bulk: /jobs throughput >= 0.9 x ceiling",
            job["images_per_s"] / ceil["best"],
            0.9,
            "ratio",
        ),
        (
            "realtime: /predict c32 >= 0.7 x ceiling",
            c32["images_per_s"] / ceil["best"],
            0.7,
            "ratio",
        ),
        *(
            (target, c32["images_per_s"] / at(points, 32)["images_per_s"], 3.0, "ratio")
            for target, points in peers
        ),
        (
            "latency: c1 p50 <= in-process batch 1 + 5 ms",
            c1["p50_ms"] - ceil["batch1_ms"],
            5.0,
            "max",
        ),
        (
            "isolation: p95 during job <= 2 x idle p95",
            ours["predict_during_job"]["p95_ms"] / c1["p95_ms"],
            2.0,
            "max",
        ),
        (
            "memory: gateway < 200 MB during the job",
            ours["memory_mb"]["peak_during_job"].get("gateway", 0.0),
            200.0,
            "max",
        ),
    ]
    soak = ours.get("soak")
    if soak:
        growth = {
            name: soak["memory_mb_last"].get(name, 0.0)
            / max(1.0, soak["memory_mb_first"].get(name, 0.0))
            for name in soak["memory_mb_first"]
            if name != "gateway"
        }
        rows.append(
            (
                f"memory: workers flat over {soak['requests']} predictions (last/first <= 1.1)",
                max(growth.values()),
                1.1,
                "max",
            )
        )
    out = []
    for what, value, bound, kind in rows:
        met = value >= bound if kind == "ratio" else value <= bound
        out.append({"target": what, "measured": round(value, 3), "bound": bound, "met": met})
    return out


def _by_threads(ceil: dict[str, Any]) -> str:
    by = ceil.get("batch1_ms_by_threads", {})  # results before 2026-12-03 have no 1-thread run
    return ", ".join(f"{ms} ms with {n} thread{'s' if n != '1' else ''}" for n, ms in by.items())


def _of_ceiling(result: dict[str, Any], images_per_s: float) -> str:
    best = result.get("reference", result["ceiling"])["best"]
    return f" ({images_per_s / best:.3f} of the ceiling)"


def _reference_line(result: dict[str, Any]) -> str:
    ref, after = result.get("reference"), result.get("ceiling_after")
    if ref is None or after is None:  # results before 2026-12-03 measured the ceiling once
        return f"Ceiling used below: **{result['ceiling']['best']} img/s**."
    return (
        f"Measured again after the stack and the peer: {after['best']} img/s, batch-1 "
        f"latency {after['batch1_ms']} ms. The targets below use the means: ceiling "
        f"**{ref['best']} img/s**, batch-1 latency **{ref['batch1_ms']} ms**."
    )


def markdown(result: dict[str, Any]) -> str:
    m, ceil, ours = result["machine"], result["ceiling"], result["catdog"]
    one = ceil["one_process_2_threads"]
    lines = [
        f"# Serving benchmark, {result['date']}",
        "",
        f"{cpu_line(m)}, {m['cores']} cores, {m['memory_gb']} GiB{load_note(m)}; commit {m['commit']}; "
        f"model {one['model']} ({one['arch']}, {one['image_size']} px). Settings: {result['settings']}.",
        "",
        f"## In-process ceiling (one process, 2 threads, {one.get('runtime', 'torch')})",
        "",
        f"Decode + preprocess alone, 1 thread: {one['preprocess']['images_per_s']} img/s.",
        "",
        "| batch | forward alone img/s | decode + preprocess + forward img/s | ms per batch "
        "| 1 thread: decode + preprocess + forward img/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    single = ceil["one_process_1_thread"]["full"]
    for size, full in one["full"].items():
        lines.append(
            f"| {size} | {one['forward'][size]['images_per_s']} | {full['images_per_s']} "
            f"| {full['batch_ms']} | {single[size]['images_per_s']} |"
        )
    lines += [
        "",
        f"Best batch {ceil['best_batch']}: {ceil['best_one_process']} img/s in one process; two "
        f"1-thread processes together, at one thread's best batch ({ceil['best_batch_1_thread']}):"
        f" {ceil['two_processes_1_thread']} img/s; in-process "
        f"batch-1 latency {ceil['batch1_ms']} ms (the faster of {_by_threads(ceil)}).",
        "",
        _reference_line(result),
        "",
        "## /predict through the stack and the peer-style server",
        "",
    ]
    lines += _curve_table(result)
    lines += _cpu_table(result)
    job, beside, mem = ours["job"], ours["predict_during_job"], ours["memory_mb"]
    lines += [
        "",
        f"**Bulk job**: {job['photos']} photos in {job['seconds']} s from the first byte of the "
        f"upload to the last result ({job['images_per_s']} img/s; the upload itself "
        f"{job['upload_s']} s), {job['done']} done, {job['failed']} failed.",
        f"**The same job with /predict beside it** (concurrency 1, all the while): the job "
        f"{ours['job_beside_predict']['images_per_s']} img/s; /predict p50 {beside['p50_ms']} ms, "
        f"p95 {beside['p95_ms']} ms over {beside['requests']} requests.",
        f"**Resident memory (MB)**: before {mem['before']}, peak during the job "
        f"{mem['peak_during_job']}, after {mem['after']}.",
    ]
    if "soak" in ours:
        s = ours["soak"]
        lines.append(
            f"**{s['requests']} predictions at concurrency 32**: {s['images_per_s']} img/s"
            f"{_of_ceiling(result, s['images_per_s'])}; "
            f"memory (MB) early {s['memory_mb_first']}, at the end {s['memory_mb_last']}."
        )
    lines += ["", "## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    for v in result["targets"]:
        lines.append(f"| {v['target']} | {v['measured']} | {'yes' if v['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


# The CPU table's columns, each a group of processes named by these prefixes (no name has two).
CPU_GROUPS = (
    ("gateway or peer server", ("gateway", "peer")),
    ("realtime workers", ("realtime",)),
    ("bulk workers", ("bulk", "worker")),
    ("Redis", ("redis",)),
    ("load client", ("client",)),
)


def _cpu_table(result: dict[str, Any]) -> list[str]:
    """Each curve point's CPU per answered request, by group of processes, against what the
    cores hold at that rate; nothing for results from before it was measured."""
    cores = result["machine"]["cores"]
    rows = []
    for name, points in (("catdog", result["catdog"]["predict"]), *_peers(result)):
        for point in points:
            spent: dict[str, float] = point.get("cpu_ms_per_request") or {}
            if not spent or not point["images_per_s"]:
                continue
            groups = [
                sum(ms for process, ms in spent.items() if process.startswith(prefixes))
                for _, prefixes in CPU_GROUPS
            ]
            cells = " | ".join(f"{ms:.2f}" for ms in [*groups, sum(spent.values())])
            held = 1000 * cores / point["images_per_s"]
            rows.append(f"| {name} | {point['concurrency']} | {cells} | {held:.2f} |")
    if not rows:
        return []
    ceil = result["ceiling"]
    per_image = 2 * 1000 / ceil["two_processes_1_thread"]
    return [
        "",
        "## CPU per answered request",
        "",
        "Milliseconds of CPU time per answered /predict, read from /proc before and after each "
        "run (a worker's pool processes count with it). The last column is what the "
        f"{cores} cores hold at that rate ({cores} x 1000 / img/s); where the others sum to "
        "less, the cores idled. In process, two 1-thread processes at batch "
        f"{ceil['best_batch_1_thread']}, each busy all the while, spent {per_image:.2f} ms "
        "per image.",
        "",
        "| server | concurrency | "
        + " | ".join(group for group, _ in CPU_GROUPS)
        + " | all | the cores at that rate |",
        "|" + " --- |" * (len(CPU_GROUPS) + 4),
        *rows,
    ]


def _curve_table(result: dict[str, Any]) -> list[str]:
    """catdog's /predict curve beside each peer's: img/s, then p50 / p95 / p99 ms."""
    columns = [("catdog", result["catdog"]["predict"]), *_peers(result)]
    head = " | ".join(f"{name} img/s | {name} p50 / p95 / p99 ms" for name, _ in columns)
    lines = [f"| concurrency | {head} |", "|" + " --- |" * (1 + 2 * len(columns))]
    for row in zip(*(points for _, points in columns), strict=True):
        cells = " | ".join(
            f"{p['images_per_s']} | {p['p50_ms']} / {p['p95_ms']} / {p['p99_ms']}" for p in row
        )
        lines.append(f"| {row[0]['concurrency']} | {cells} |")
    return lines


def _peers(result: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The peer-style server's curves, named by what ran its forward pass."""
    # The runtime the ceiling resolved the stack's setting to ("auto" is ONNX Runtime on a
    # CPU): the peer ran the same.
    runtime = result["ceiling"]["one_process_2_threads"].get("runtime", "torch")
    peers = [(f"peer ({runtime})", result["peer"])]
    if "peer_torch" in result:
        peers.append(("peer (torch)", result["peer_torch"]))
    return peers


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in (("catdog", result["catdog"]["predict"]), *_peers(result)):
        xs = [p["concurrency"] for p in points]
        left.plot(xs, [p["images_per_s"] for p in points], marker="o", label=name)
        right.plot(xs, [p["p95_ms"] for p in points], marker="o", label=name)
    left.axhline(
        result.get("reference", result["ceiling"])["best"],
        linestyle="--",
        color="grey",
        label="in-process ceiling",
    )
    for axis, title in ((left, "throughput (img/s)"), (right, "p95 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients")
        axis.set_title(f"/predict {title}")
        axis.legend()
    fig.suptitle(
        f"{result['machine']['cpu']}, {result['machine']['cores']} cores, {result['date']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("CATDOG_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests")
    parser.add_argument(
        "--soak", type=int, default=10_000, help="predictions for worker memory (0: skip)"
    )
    add_settle_option(parser)
    args = parser.parse_args()
    os.chdir(ROOT)  # the commit, run/ and .env are the checkout's
    if not KAGGLE.is_dir():
        raise SystemExit(f"no photos at {KAGGLE}")
    try:
        httpx.get(f"{args.url}/readyz", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise SystemExit(f"catdog is not ready at {args.url} ({exc}); run `make up` first") from exc
    from common.settings import get_settings

    settings = get_settings()
    stack_env = environ_of("realtime1")
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": settled_machine(args.settle_s),
        "settings": {
            # The workers' values (what serve.sh gave them), else this process's settings.
            **{
                name: stack_env.get(f"CATDOG_{name.upper()}", getattr(settings, name))
                for name in ("max_batch_size", "max_wait_ms", "batch_size", "chunk_size")
            },
            "realtime_workers": sum(name.startswith("realtime") for name in processes()),
            "realtime_threads": worker_option("realtime1", "--concurrency"),
            "realtime_torch_threads": stack_env.get("CATDOG_WORKER_THREADS"),
            "inference_runtime": stack_runtime(),
            "bulk_concurrency": worker_option("bulk1", "--concurrency"),
        },
    }
    print("in-process ceiling...", flush=True)
    result["ceiling"] = ceiling()
    print(
        f"  best {result['ceiling']['best']} img/s at batch {result['ceiling']['best_batch']}",
        flush=True,
    )
    result["catdog"] = stack(args.url, args.quick, 0 if args.quick else args.soak)
    runtime = stack_runtime()
    result["peer"] = peer(args.quick, runtime)
    if runtime != "torch":
        result["peer_torch"] = peer(args.quick, "torch")
    print("in-process ceiling again...", flush=True)
    result["ceiling_after"] = ceiling()
    result["reference"] = reference(result["ceiling"], result["ceiling_after"])
    result["targets"] = verdicts(
        result["reference"], result["catdog"], result["peer"], result.get("peer_torch")
    )
    name = f"serving-{machine_label(result['machine'])}"
    stem = write_results(name, result, markdown(result), keep_earlier=True)
    plot(result, stem.with_suffix(".png"))
    print(f"results: {stem}.json, .md, .png (under {RESULTS})")
    print(f"every run so far: {write_history()}.md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
