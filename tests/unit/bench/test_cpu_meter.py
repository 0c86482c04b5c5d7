"""The serving harness reads the CPU a run cost each process from /proc, and the options the
stack's workers really run with from their command lines (not from its own environment)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import serving
from serving import CpuMeter

# Says it is ready, waits for a line, spends 0.3 s of CPU when the line says so, then sleeps.
CHILD = """
import sys, time
print("ready", flush=True)
if sys.stdin.readline().strip() == "burn":
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
print("done", flush=True)
time.sleep(30)
"""


def child() -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def tell(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "done"


def test_the_cpu_each_process_and_the_client_spend_in_a_run_is_counted_per_answer() -> None:
    busy, idle = child(), child()
    try:
        with CpuMeter({"busy": busy.pid, "idle": idle.pid}) as meter:
            tell(busy, "burn")
            tell(idle, "rest")
            end = time.process_time() + 0.2
            while time.process_time() < end:  # this process: the load client
                pass
        spent = meter.per_request(2)
    finally:
        for process in (busy, idle):
            process.kill()
            process.wait()
    assert spent["busy"] >= 0.9 * 300 / 2
    assert spent["client"] >= 0.9 * 200 / 2
    assert spent["idle"] < 10


def test_a_workers_options_are_read_from_its_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeper = [sys.executable, "-c", CHILD]
    worker = subprocess.Popen(
        [*sleeper, "--pool", "threads", "--concurrency", "4"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    # Running, not only started: Popen can return while the kernel is still setting up the
    # new program, whose command line then reads empty.
    assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    try:
        monkeypatch.setattr(serving, "RUN", tmp_path)
        (tmp_path / "realtime1.pid").write_text(str(worker.pid))
        monkeypatch.setenv("REALTIME_THREADS", "16")  # what the harness's own environment says
        assert serving.worker_option("realtime1", "--concurrency") == "4"
        assert serving.worker_option("realtime1", "--hostname") is None
        assert serving.worker_option("bulk1", "--concurrency") is None  # no such worker
    finally:
        worker.kill()
        worker.wait()
