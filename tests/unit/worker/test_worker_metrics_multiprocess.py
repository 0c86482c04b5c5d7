"""Worker metrics under a prefork pool: every child's numbers reach Prometheus through the one
exporter of the main process (prometheus_client multiprocess mode), and a child's live gauges
disappear when it exits, cleanly or killed. Real processes: a fresh interpreter (the variable
must be set before prometheus_client is imported) that forks two children."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
DRIVER = Path(__file__).with_name("multiproc_driver.py")

PREDICTIONS = "catdog_worker_predictions_total{label=cat,model_name=catdog,model_version=7}"
MODEL_INFO = "catdog_worker_model_info{device=cpu,model_name=catdog,model_version=7}"
BATCHES = "catdog_worker_batch_size_count{queue=bulk}"
WAITS = "catdog_worker_queue_wait_seconds_count{queue=bulk}"
FAILED = "catdog_worker_images_total{outcome=failed,queue=bulk}"


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("prometheus-multiproc")
    (directory / "counter_999999999.db").write_bytes(b"stale file of an earlier run")
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "PYTHONPATH": str(REPO_ROOT),
    }
    result = subprocess.run(
        [sys.executable, str(DRIVER)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    data["dir"] = directory
    return data


def test_exporter_sums_the_counters_of_every_child(scrapes: dict[str, Any]) -> None:
    both = scrapes["both_alive"]
    assert both[PREDICTIONS] == 3 + 5
    assert both[BATCHES] == 2
    assert both[WAITS] == 2 * 4
    assert both[FAILED] == 2


def test_model_info_counts_the_live_processes_serving_a_version(scrapes: dict[str, Any]) -> None:
    assert scrapes["both_alive"][MODEL_INFO] == 2


def test_a_child_that_exits_cleanly_leaves_its_counts_and_drops_its_live_gauge(
    scrapes: dict[str, Any],
) -> None:
    after = scrapes["a_exited"]
    assert after[PREDICTIONS] == 8
    assert after[MODEL_INFO] == 1


def test_a_killed_child_is_reaped_at_the_next_scrape(scrapes: dict[str, Any]) -> None:
    after = scrapes["b_killed"]
    assert after[PREDICTIONS] == 8
    assert after.get(MODEL_INFO, 0) == 0
    live_files = list(Path(scrapes["dir"]).glob("gauge_live*"))
    assert live_files == []


def test_stale_files_of_an_earlier_run_are_removed_at_start(scrapes: dict[str, Any]) -> None:
    assert not (Path(scrapes["dir"]) / "counter_999999999.db").exists()
