"""Run by test_worker_metrics_multiprocess.py in a fresh interpreter, with
PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported (as in a worker container).

The main process plays Celery's main process (exporter on a free port), two forked children
play prefork pool processes. Prints one JSON object: the samples scraped over HTTP at three
moments (both children alive; child A exited cleanly; child B SIGKILLed too).
"""

import json
import multiprocessing
import os
import signal
import sys
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from worker import metrics as wm

PREDICTIONS = {"a": 3, "b": 5}


def child(name: str, ready: Any, release: Any) -> None:
    wm.set_model("catdog", "7", "cpu")
    wm.observe_batch("bulk", 4, 0.2)
    wm.observe_queue_wait("bulk", 1.5, items=4)
    for _ in range(PREDICTIONS[name]):
        wm.observe_prediction("bulk", "cat", 0.9, "catdog", "7")
    wm.observe_item_failure("bulk", "truncated")
    ready.set()
    release.wait(30)
    wm.on_child_exit(os.getpid())  # what Celery's worker_process_shutdown handler does


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def main() -> int:
    assert wm.multiprocess_active(), "PROMETHEUS_MULTIPROC_DIR must be set before the import"
    wm.reset_multiproc_dir()
    server = wm.start_metrics_server(0, addr="127.0.0.1")
    assert server is not None
    port = server.server_port
    ctx = multiprocessing.get_context("fork")
    procs = {}
    for name in PREDICTIONS:
        ready, release = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=child, args=(name, ready, release))
        proc.start()
        assert ready.wait(30), f"child {name} did not start"
        procs[name] = (proc, release)
    out: dict[str, Any] = {"pids": {n: p.pid for n, (p, _) in procs.items()}}
    out["both_alive"] = scrape(port)

    proc_a, release_a = procs["a"]
    release_a.set()
    proc_a.join(30)
    out["a_exited"] = scrape(port)

    proc_b, _ = procs["b"]
    os.kill(proc_b.pid, signal.SIGKILL)  # no exit hook runs
    proc_b.join(30)
    out["b_killed"] = scrape(port)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
