"""The history of `make bench` runs: one row per serving results file, oldest first, each
target met or not as that run measured it, and a dash where that day's harness did not
measure a target at all (an older run must not read as a miss)."""

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from history import BULK, C1, C32, write_history

PYTORCH_PEER = "realtime: /predict c32 >= 3 x peer c32, the peer on PyTorch"


def target(name: str, measured: float, met: bool) -> dict[str, Any]:
    return {"target": name, "measured": measured, "met": met}


def results_file(folder: Path, day: str, cpu_id: str, targets: list[dict[str, Any]]) -> None:
    found = {
        "date": day,
        "machine": {"cpu": "AMD EPYC Processor", "cores": 2, "cpu_id": cpu_id, "commit": "f" * 40},
        "ceiling": {"best": 80.0, "one_process_2_threads": {"runtime": "onnxruntime"}},
        "reference": {"best": 90.5, "batch1_ms": 18.0},
        "targets": targets,
    }
    name = f"{day}-serving-2core-amd.json"
    (folder / name).write_text(json.dumps(found))


def test_every_run_is_a_row_oldest_first_with_its_own_verdicts(tmp_path: Path) -> None:
    results_file(
        tmp_path,
        "2026-12-07",
        "family 25 model 17 stepping 1",
        [target(BULK, 0.93, True), target(C32, 0.68, False), target(PYTORCH_PEER, 3.4, True)],
    )
    results_file(
        tmp_path, "2026-12-03", "family 23 model 1 stepping 2", [target(BULK, 0.87, False)]
    )
    (tmp_path / "2026-12-03-latency-breakdown-2core-amd.json").write_text("{}")  # not a run

    stem = write_history(tmp_path)

    table = stem.with_suffix(".md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| [")]
    assert len(rows) == 2
    older, newer = rows
    assert "2026-12-03" in older and "2core-amd-23-1" in older
    assert "2026-12-07" in newer and "2core-amd-25-17" in newer
    cells = [cell.strip() for cell in newer.strip("|").split("|")]
    assert cells[4] == "90.5"  # the reference the targets divided by, not the first ceiling
    assert cells[5:9] == ["0.93 ✓", "0.68 ✗", "-", "3.4 ✓"]
    assert "0.87 ✗" in older and "3.4" not in older
    assert "c32 / peer on PyTorch (>= 3) 1 of 1" in table
    assert "bulk / ceiling (>= 0.9) 1 of 2" in table
    assert stem.with_suffix(".png").stat().st_size > 0


def test_the_plot_draws_runs_without_a_latency_figure(tmp_path: Path) -> None:
    results_file(tmp_path, "2026-12-08", "family 6 model 167", [target(C1, 6.6, False)])
    assert write_history(tmp_path).with_suffix(".png").stat().st_size > 0


def test_a_second_run_of_the_day_keeps_the_first_and_both_are_rows(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import reporting

    monkeypatch.setattr(reporting, "RESULTS", tmp_path)
    machine = {"cpu": "AMD EPYC Processor", "cores": 2, "cpu_id": "family 25 model 17"}
    ceiling = {"best": 110.0, "one_process_2_threads": {"runtime": "onnxruntime"}}
    stems = []
    for commit, bulk in (("a" * 40, 0.95), ("b" * 40, 0.89)):
        run = {
            "date": "2026-12-08",
            "machine": {**machine, "commit": commit},
            "ceiling": ceiling,
            "targets": [target(BULK, bulk, bulk >= 0.9)],
        }
        stems.append(reporting.write_results("serving-2core-amd-25-17", run, "", keep_earlier=True))

    first = "2026-12-08-serving-2core-amd-25-17"
    assert [s.name for s in stems] == [first, f"{first}-2"]
    table = write_history(tmp_path).with_suffix(".md").read_text()
    assert "0.95 ✓" in table and "0.89 ✗" in table
    assert "bulk / ceiling (>= 0.9) 1 of 2" in table
