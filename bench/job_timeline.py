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
themselves are from the model's speed.

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
from load import JobRun, job_run  # noqa: E402
from reporting import cpu_line, machine_label, write_results  # noqa: E402
from serving import (  # noqa: E402
    RUN,
    add_settle_option,
    bench_key,
    environ_of,
    load_note,
    log_entries,
    settled_machine,
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
        ]
    )


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
    job = asyncio.run(job_run(args.url, photos(args.photos), bench_key()))
    time.sleep(1)  # the last log lines
    chunks = chunks_of(job.job_id)
    if not chunks:
        raise SystemExit(f"no chunk of job {job.job_id} in {RUN}/logs/bulk*.log")
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": described,
        "batch_size": batch_size,
        "timeline": timeline(job, chunks),
        "two_processes_1_thread": two_processes(str(batch_size)),
        "chunks": [c.__dict__ for c in chunks],
    }
    write_results(f"job-timeline-{machine_label(result['machine'])}", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
