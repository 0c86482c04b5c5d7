"""The serving report states the 3 x peer target against each peer it measured: the peer on
the stack's runtime (serving alone) and, where measured, the peer on PyTorch (how public
projects serve), each in a row and a table column of its own. The harnesses start on a quiet
machine and say how quiet it was. The report shows the CPU each run spent per answer, by
group of processes, against what the cores hold at that rate."""

import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import serving
from serving import markdown, verdicts


def curve(*rates: float) -> list[dict[str, Any]]:
    return [
        {"concurrency": c, "images_per_s": r, "p50_ms": 20.0, "p95_ms": 30.0, "p99_ms": 40.0}
        for c, r in zip((1, 8, 32), rates, strict=True)
    ]


def result(peer_torch: list[dict[str, Any]] | None) -> dict[str, Any]:
    one = {
        "model": "catdog v1",
        "arch": "efficientnet_lite1",
        "image_size": 240,
        "runtime": "onnxruntime",
        "preprocess": {"images_per_s": 200.0},
        "forward": {"1": {"images_per_s": 60.0}},
        "full": {"1": {"images_per_s": 50.0, "batch_ms": 20.0}},
    }
    ceiling = {
        "one_process_2_threads": one,
        "one_process_1_thread": {"full": {"1": {"images_per_s": 55.0}}},
        "best_batch": "1",
        "best_one_process": 50.0,
        "best_batch_1_thread": "1",
        "two_processes_1_thread": 90.0,
        "batch1_ms": 18.0,
        "best": 90.0,
    }
    job = {"photos": 1000, "seconds": 12.0, "images_per_s": 83.0, "upload_s": 0.4}
    catdog = {
        "predict": curve(30.0, 60.0, 66.0),
        "job": {**job, "done": 1000, "failed": 0},
        "job_beside_predict": {"images_per_s": 50.0},
        "predict_during_job": {"p50_ms": 25.0, "p95_ms": 33.0, "requests": 700},
        "memory_mb": {"before": {}, "peak_during_job": {"gateway": 85.0}, "after": {}},
    }
    reference = {"best": 90.0, "batch1_ms": 18.0}
    found: dict[str, Any] = {
        "date": "2026-12-07",
        "machine": {
            "cpu": "Intel(R) Xeon(R) Processor",
            "cores": 2,
            "memory_gb": 23.5,
            "commit": "abc",
        },
        "settings": {"inference_runtime": "auto"},
        "ceiling": ceiling,
        "ceiling_after": ceiling,
        "reference": reference,
        "catdog": catdog,
        "peer": curve(35.0, 36.0, 44.0),
    }
    if peer_torch is not None:
        found["peer_torch"] = peer_torch
    found["targets"] = verdicts(reference, catdog, found["peer"], peer_torch)
    return found


def rows(found: dict[str, Any]) -> dict[str, tuple[float, bool]]:
    return {v["target"]: (v["measured"], v["met"]) for v in found["targets"]}


def test_the_target_is_stated_against_each_peer_that_was_measured() -> None:
    found = result(curve(20.0, 21.0, 22.0))
    assert rows(found)["realtime: /predict c32 >= 3 x peer c32"] == (1.5, False)
    assert rows(found)["realtime: /predict c32 >= 3 x peer c32, the peer on PyTorch"] == (3.0, True)
    report = markdown(found)
    assert "peer (onnxruntime) img/s" in report and "peer (torch) img/s" in report
    assert "| 32 | 66.0 | 20.0 / 30.0 / 40.0 | 44.0 | 20.0 / 30.0 / 40.0 | 22.0 |" in report


def test_without_a_pytorch_peer_there_is_no_row_for_it() -> None:
    found = result(None)
    assert not any("PyTorch" in target for target in rows(found))
    assert "peer (torch)" not in markdown(found)


def test_the_harness_waits_for_a_quiet_machine_and_reports_the_load_it_started_at(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads = iter([3.0, 1.2, 0.1])
    monkeypatch.setattr(serving.os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    monkeypatch.setattr(serving.os, "sched_getaffinity", lambda _: {0, 1})
    assert serving.settle(max_s=5, every_s=0.01) == 0.1
    assert serving.load_note({"load_at_start": 0.1}) == ", 1-minute load average 0.1 at the start"
    assert serving.load_note({}) == ""


def test_a_machine_that_stays_busy_is_measured_anyway_after_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(serving.os, "getloadavg", lambda: (1.7, 0.0, 0.0))
    monkeypatch.setattr(serving.os, "sched_getaffinity", lambda _: {0, 1})
    started = time.monotonic()
    assert serving.settle(max_s=0.2, every_s=0.05) == 1.7
    assert time.monotonic() - started < 2


def test_the_cpu_each_answer_cost_is_shown_by_group_against_what_the_cores_hold() -> None:
    found = result(None)
    found["catdog"]["predict"][2]["cpu_ms_per_request"] = {
        "gateway": 2.5,
        "realtime1": 10.0,
        "realtime2": 11.0,
        "bulk1": 0.05,
        "redis": 0.5,
        "client": 0.2,
    }
    found["peer"][0]["cpu_ms_per_request"] = {"peer": 19.0, "client": 0.3}
    report = markdown(found)
    assert "## CPU per answered request" in report
    # 66 img/s on 2 cores: the cores hold 30.30 ms of CPU per answer.
    assert "| catdog | 32 | 2.50 | 21.00 | 0.05 | 0.50 | 0.20 | 24.25 | 30.30 |" in report
    assert (
        "| peer (onnxruntime) | 1 | 19.00 | 0.00 | 0.00 | 0.00 | 0.30 | 19.30 | 57.14 |" in report
    )
    # Points measured without it (and results from before it) get no row.
    assert "| catdog | 1 |" not in report
    # The in-process pair at 90 img/s: two busy processes, 22.22 ms of CPU per image.
    assert "spent 22.22 ms per image" in report


def test_results_without_cpu_figures_have_no_cpu_table() -> None:
    assert "CPU per answered request" not in markdown(result(None))
