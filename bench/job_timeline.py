"""Where a bulk job's time goes (`make up` first): one job from its first byte to its last
result (the job's `finished_at`), split by the bulk workers' "chunk done" log lines (each
says when a chunk ended and how long it ran).

- the upload: the first byte sent to the 202 answer (chunks are queued at its end);
- the wait: the answer to the first chunk starting;
- the run: the first chunk's start to the job's end (its `finished_at`, written with its
  last result); within it the time every bulk process was busy, the time some were idle
  (between two of a process's chunks, or at the end, when the last chunks run alone) and
  how fast the processes were while busy.

Beside it, two 1-thread processes of bench/ceiling.py at the bulk batch size (the pair the
serving harness calls the ceiling), timed right after the job: how far the busy processes
themselves are from the model's speed. And where the cores went while the job ran (sampled
from /proc every 0.2 s): the bulk processes' share of them, every other process's, the idle
and the stolen, and the bulk processes' CPU per image against the pair's. A pair process
owns a core; the bulk processes share theirs with the service around them, so the two
together tell a job slower per image from one that got less of the machine.

    python bench/job_timeline.py                  # 1,000 photos
    python bench/job_timeline.py --photos 200

Writes bench/results/<date>-job-timeline-<machine>.json and .md.
"""

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from ceiling import photos  # noqa: E402
from load import (  # noqa: E402
    JobRun,
    cpu_s,
    job_run,
    machine_cpu_s,
    own_cpu_s,
    tree_pids,
)
from reporting import cpu_line, machine_label, write_results  # noqa: E402
from serving import (  # noqa: E402
    RUN,
    Sampler,
    add_settle_option,
    bench_key,
    environ_of,
    load_note,
    log_entries,
    pid_of,
    settled_machine,
    stack_pids,
    two_processes,
)


@dataclass(frozen=True)
class Chunk:
    start: float  # epoch seconds
    end: float
    items: int


def chunks_of(job_id: str, logs: Path = RUN / "logs") -> list[Chunk]:
    """The job's chunks, from the "chunk done" lines of the bulk workers' logs."""
    found = []
    for _, entry in log_entries(logs, "bulk*.log"):
        if entry.get("message") == "chunk done" and entry.get("job_id") == job_id:
            end = datetime.fromisoformat(entry["timestamp"]).timestamp()
            found.append(Chunk(end - entry["latency_ms"] / 1000, end, int(entry["items"])))
    return sorted(found, key=lambda c: c.start)


def busy_profile(chunks: list[Chunk]) -> dict[int, float]:
    """Seconds spent with exactly n chunks running, for each n seen (0 included)."""
    edges = sorted([(c.start, 1) for c in chunks] + [(c.end, -1) for c in chunks])
    profile: dict[int, float] = {}
    running, since = 0, edges[0][0]
    for at, change in edges:
        profile[running] = profile.get(running, 0.0) + at - since
        running, since = running + change, at
    return profile


def timeline(job: JobRun, chunks: list[Chunk]) -> dict[str, Any]:
    profile = busy_profile(chunks)
    processes = max(profile)
    first = chunks[0].start
    run_s = job.started_at + job.seconds - first
    busy_s = sum(c.end - c.start for c in chunks)
    images = sum(c.items for c in chunks)
    # What the idle part of the run cost: process-seconds not spent on a chunk, in wall time.
    idle_s = run_s - busy_s / processes
    uploaded = job.started_at + job.upload_s
    return {
        "photos": job.total,
        "done": job.done,
        "seconds": round(job.seconds, 3),
        "images_per_s": round(job.done / job.seconds, 2),
        "processes": processes,
        "chunks": len(chunks),
        "parts_s": {
            "upload": round(job.upload_s, 3),
            "wait": round(first - uploaded, 3),
            "run": round(run_s, 3),
        },
        "run_s_by_busy_processes": {str(n): round(s, 3) for n, s in sorted(profile.items())},
        "run_idle_s": round(idle_s, 3),
        "busy_images_per_s": round(images * processes / busy_s, 2),
    }


BULK = "bulk processes"
# How often the cores' use is read during the job: fine enough to leave the run's first and
# last fraction of a second out of the shares, coarse enough to cost this client little.
CPU_EVERY_S = 0.2


@dataclass(frozen=True)
class CpuSample:
    at: float  # epoch seconds
    by_process: dict[str, float]  # CPU seconds so far, each group of processes
    machine: dict[str, float]  # machine_cpu_s()


def watched() -> dict[str, int]:
    """The processes whose CPU the job's split reads, by name: the stack's and Redis
    (`stack_pids`), and Flower."""
    found = stack_pids()
    if (flower := pid_of("flower")) is not None:
        found["flower"] = flower
    return found


def cpu_by_process(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of the `watched()` processes, grouped: the bulk workers' pool
    processes (which run the job), their main processes, the gateway, the realtime workers,
    Redis, Flower and this client."""
    bulk = [pid for name, pid in pids.items() if name.startswith("bulk")]
    spent = {
        BULK: sum(own_cpu_s(p) for main in bulk for p in tree_pids(main)[1:]),
        "bulk main processes": sum(own_cpu_s(main) for main in bulk),
        "realtime workers": sum(
            cpu_s(pid) for name, pid in pids.items() if name.startswith("realtime")
        ),
        "this client": own_cpu_s(os.getpid()),
    }
    for name in ("gateway", "redis", "flower"):
        if name in pids:
            spent[name] = cpu_s(pids[name])
    return spent


def cpu_sampler(every_s: float = CPU_EVERY_S) -> Sampler[CpuSample]:
    """`cpu_by_process()` of the `watched()` processes and the machine's CPU every
    `every_s`, in a thread (1.3 ms of this client's CPU each on the 2-core VM)."""
    pids = watched()
    return Sampler(lambda: CpuSample(time.time(), cpu_by_process(pids), machine_cpu_s()), every_s)


def cpu_split(
    samples: list[CpuSample], start: float, end: float, cores: int, images: int, pair: float
) -> dict[str, Any]:
    """Where the cores went between `start` and `end` (the run): each group's share of the
    cores over the samples taken inside it, with the rest of the machine's busy time as
    "other", and the idle and stolen; and the bulk processes' CPU per image over the samples
    around it (they idle before and after), against `pair`'s (two 1-thread processes at
    `pair` img/s, one core each)."""
    # The samples are in time order.
    inside = [s for s in samples if start <= s.at <= end]
    before = [s for s in samples if s.at <= start]
    after = [s for s in samples if s.at >= end]
    if len(inside) < 2 or not before or not after:
        raise ValueError("too few CPU samples around and inside the run")
    first, last = inside[0], inside[-1]
    window_s = last.at - first.at
    core_s = window_s * cores
    shares = {
        name: (last.by_process[name] - first.by_process.get(name, 0.0)) / core_s
        for name in last.by_process
    }
    busy = (last.machine["busy"] - first.machine["busy"]) / core_s
    shares["other"] = busy - sum(shares.values())
    for part in ("idle", "steal"):
        shares[part] = (last.machine[part] - first.machine[part]) / core_s
    bulk_s = after[0].by_process[BULK] - before[-1].by_process[BULK]
    return {
        "window_s": round(window_s, 3),
        "cores": cores,
        "share_of_cores": {name: round(share, 4) for name, share in shares.items()},
        "bulk_cpu_ms_per_image": round(1000 * bulk_s / images, 2),
        "pair_cpu_ms_per_image": round(1000 * 2 / pair, 2),
    }


def markdown(result: dict[str, Any]) -> str:
    t, m = result["timeline"], result["machine"]
    parts, pair = t["parts_s"], result["two_processes_1_thread"]
    by_busy = ", ".join(f"{n} busy: {s} s" for n, s in t["run_s_by_busy_processes"].items())
    return "\n".join(
        [
            f"# Where a bulk job's time goes, {result['date']}",
            "",
            f"{cpu_line(m)}, {m['cores']} cores{load_note(m)}; commit {m['commit']}; one job of {t['photos']}"
            f" photos, {t['chunks']} chunks on {t['processes']} bulk processes, batch"
            f" {result['batch_size']}.",
            "",
            "| part | s |",
            "| --- | --- |",
            f"| the upload (first byte to the 202 answer) | {parts['upload']} |",
            f"| the wait (the answer to the first chunk's start) | {parts['wait']} |",
            f"| the run (first chunk's start to the job's last result) | {parts['run']} |",
            f"| of which some process idle, in wall time | {t['run_idle_s']} |",
            f"| **the whole job** ({t['images_per_s']} img/s) | {t['seconds']} |",
            "",
            f"The run by busy processes: {by_busy}.",
            "",
            f"While busy, the processes ran at {t['busy_images_per_s']} img/s together; two"
            f" 1-thread processes of bench/ceiling.py at batch {result['batch_size']}, timed"
            f" right after: {pair} img/s ({round(t['busy_images_per_s'] / pair, 3)} of it).",
            "",
            *cpu_lines(result["cpu"]),
        ]
    )


def cpu_lines(cpu: dict[str, Any]) -> list[str]:
    shares = sorted(cpu["share_of_cores"].items(), key=lambda item: -item[1])
    return [
        f"Where the {cpu['cores']} cores went during the run ({cpu['window_s']} s between the"
        " CPU samples inside it, /proc):",
        "",
        "| process | share of the cores |",
        "| --- | --- |",
        *(f"| {name} | {share:.3f} |" for name, share in shares),
        "",
        f"The bulk processes spent {cpu['bulk_cpu_ms_per_image']} ms of CPU per image; the"
        f" ceiling pair {cpu['pair_cpu_ms_per_image']} ms (a core each).",
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("CATDOG_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--photos", type=int, default=1000)
    add_settle_option(parser)
    args = parser.parse_args()
    os.chdir(BENCH.parent)
    from common.settings import get_settings

    # The bulk workers' batch size (what serve.sh gave them), else this process's setting.
    batch_size = int(environ_of("bulk1").get("CATDOG_BATCH_SIZE", get_settings().batch_size))
    described = settled_machine(args.settle_s)
    with cpu_sampler() as sampler:
        job = asyncio.run(job_run(args.url, photos(args.photos), bench_key()))
        time.sleep(1)  # the last log lines, and a CPU sample after the job's end
    chunks = chunks_of(job.job_id)
    if not chunks:
        raise SystemExit(f"no chunk of job {job.job_id} in {RUN}/logs/bulk*.log")
    pair = two_processes(str(batch_size))
    run_end = job.started_at + job.seconds
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": described,
        "batch_size": batch_size,
        "timeline": timeline(job, chunks),
        "two_processes_1_thread": pair,
        "cpu": cpu_split(
            sampler.samples, chunks[0].start, run_end, described["cores"], job.done, pair
        ),
        "chunks": [c.__dict__ for c in chunks],
    }
    write_results(f"job-timeline-{machine_label(result['machine'])}", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
