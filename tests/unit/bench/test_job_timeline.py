"""bench/job_timeline.py splits a job's time by its chunks' log lines: the split must add up
to what the client saw, and idle processes must show as idle."""

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from job_timeline import BULK, Chunk, CpuSample, busy_profile, chunks_of, cpu_split, timeline
from load import JobRun


def _line(job_id: str, end: float, latency_ms: float, items: int = 16) -> str:
    stamp = datetime.fromtimestamp(end, UTC).isoformat()
    entry = {"timestamp": stamp, "message": "chunk done", "job_id": job_id}
    return json.dumps({**entry, "latency_ms": latency_ms, "items": items})


def test_chunks_are_read_from_every_bulk_log_and_only_for_the_job(tmp_path: Path) -> None:
    (tmp_path / "bulk1.log").write_text(
        "celery banner, not JSON\n"
        + _line("job-a", 1000.5, 500)
        + "\n"
        + _line("job-b", 1000.7, 100)
        + "\n"
    )
    (tmp_path / "bulk2.log").write_text(_line("job-a", 1000.4, 200, items=8) + "\n")
    (tmp_path / "realtime1.log").write_text(_line("job-a", 999.0, 10) + "\n")

    found = chunks_of("job-a", tmp_path)

    assert [(c.start, c.end, c.items) for c in found] == [
        pytest.approx((1000.0, 1000.5, 16)),
        pytest.approx((1000.2, 1000.4, 8)),
    ]


def test_busy_profile_counts_the_time_at_each_level_of_concurrency() -> None:
    # Two processes: both busy 1-3, one alone 0-1 and 3-4, none 4-5, one again 5-6.
    chunks = [Chunk(0, 3, 16), Chunk(1, 4, 16), Chunk(5, 6, 16)]

    assert busy_profile(chunks) == {0: 1.0, 1: 3.0, 2: 2.0}


def test_the_parts_add_up_to_the_job_and_idle_processes_cost_wall_time() -> None:
    # Upload 0-1 s, chunks queued; first chunk at 1.25; the last result at 5.0.
    job = JobRun(64, 1.0, 5.0, 64, 0, "succeeded", "job-a", started_at=100.0)
    chunks = [
        Chunk(101.25, 103.25, 16),
        Chunk(101.25, 103.0, 16),
        Chunk(103.0, 105.0, 16),
        Chunk(103.25, 104.0, 16),
    ]

    t = timeline(job, chunks)

    parts = t["parts_s"]
    assert parts == pytest.approx({"upload": 1.0, "wait": 0.25, "run": 3.75})
    assert sum(parts.values()) == pytest.approx(job.seconds)
    assert t["processes"] == 2
    # 6.5 process-seconds of chunks in a 3.75 s run on two processes: 0.5 s idle in wall time
    # (one process alone from 4.0 to 5.0).
    assert t["run_idle_s"] == pytest.approx(0.5)
    assert t["run_s_by_busy_processes"] == pytest.approx({"0": 0.0, "1": 1.0, "2": 2.75})
    assert t["busy_images_per_s"] == pytest.approx(64 * 2 / 6.5, abs=0.01)


def _sample(at: float, bulk: float, gateway: float, busy: float, idle: float) -> CpuSample:
    return CpuSample(
        at, {BULK: bulk, "gateway": gateway}, {"busy": busy, "idle": idle, "steal": 0.0}
    )


def test_the_cores_split_over_the_run_and_the_bulk_cpu_per_image() -> None:
    # 2 cores; the run from 10.5 to 13.5. Inside it (samples at 11, 12, 13) the bulk processes
    # take 1.8 core-seconds a second, the gateway 0.1 and something else 0.06, idle 0.04.
    # Before 10.5 and after 13.5 the bulk processes idle: 6.0 s of their CPU for 300 images.
    samples = [
        _sample(10.0, 0.0, 0.0, 0.0, 2.0),
        _sample(11.0, 0.5, 0.1, 0.6, 3.4),
        _sample(12.0, 2.3, 0.2, 2.56, 3.44),
        _sample(13.0, 4.1, 0.3, 4.52, 3.48),
        _sample(14.0, 6.0, 0.4, 6.5, 4.0),
    ]

    split = cpu_split(samples, start=10.5, end=13.5, cores=2, images=300, pair=100.0)

    assert split["window_s"] == pytest.approx(2.0)
    shares = split["share_of_cores"]
    assert shares[BULK] == pytest.approx(0.9)
    assert shares["gateway"] == pytest.approx(0.05)
    assert shares["other"] == pytest.approx(0.03)
    assert shares["idle"] == pytest.approx(0.02)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert split["bulk_cpu_ms_per_image"] == pytest.approx(20.0)
    assert split["pair_cpu_ms_per_image"] == pytest.approx(20.0)


def test_a_run_without_samples_inside_it_is_refused() -> None:
    samples = [_sample(10.0, 0, 0, 0, 0), _sample(11.0, 1, 0, 1, 1)]

    with pytest.raises(ValueError, match="too few CPU samples"):
        cpu_split(samples, start=10.2, end=10.8, cores=2, images=10, pair=100.0)
