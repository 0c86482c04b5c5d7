"""The production worker shape: a threaded realtime worker whose concurrent /predict requests
share micro-batched forward passes, beside a bulk worker at a lower CPU priority.

A dedicated stack: no worker consumes both queues, so every /predict answer comes from the
realtime worker and every job item from the bulk worker.
"""

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.processes import Stack, scrape, start_stack, total, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SETTINGS = {"max_batch_size": 8, "heartbeat_interval_s": 0.5, "worker_threads": 1}


@pytest.fixture(scope="module")
def split_stack(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("batching"), str(checkpoint), 0, **SETTINGS)
    try:
        stack.add_worker("rt", concurrency=8, pool="threads", queues="realtime")
        stack.add_worker("bulk", concurrency=1, queues="bulk", worker_nice=10)
    except BaseException:
        stack.stop()
        raise
    yield stack
    stack.stop()


def test_concurrent_predictions_share_forward_passes_and_answer_as_in_process(
    split_stack: Stack,
    photo_dir: Path,
    checkpoint: Path,
    in_process: Callable[[Path, list[bytes]], list[dict[str, float]]],
) -> None:
    photos = sorted((photo_dir / "kaggle").glob("*.jpg"))[:24]
    datas = [p.read_bytes() for p in photos]
    expected = in_process(checkpoint, datas)
    metrics_url = split_stack.worker("rt").metrics_url

    def batches() -> tuple[float, float]:
        samples = scrape(metrics_url)
        count = total(samples, "catdog_worker_batch_size_count", queue="realtime")
        return count, total(samples, "catdog_worker_batch_size_sum", queue="realtime")

    passes_before, images_before = batches()
    with split_stack.client() as client, ThreadPoolExecutor(12) as pool:

        def predict(data: bytes) -> httpx.Response:
            return client.post("/predict", files={"file": ("p.jpg", data)})

        responses = list(pool.map(predict, datas))
    for response, reference in zip(responses, expected, strict=True):
        assert response.status_code == 200, response.text
        # A batched forward pass computes each image as a pass of one does (to float noise).
        assert response.json()["probabilities"] == pytest.approx(reference, abs=1e-5)
    passes, images = batches()
    assert images - images_before == len(datas)  # every answer came from a counted pass
    assert passes - passes_before < len(datas)  # and some passes answered several requests
    assert total(scrape(metrics_url), "catdog_worker_batch_wait_seconds_count") >= 1


def test_jobs_run_on_the_bulk_worker_at_its_lower_cpu_priority(
    split_stack: Stack, photo_dir: Path
) -> None:
    bulk = split_stack.worker("bulk")
    main_pid = bulk.popen.pid
    children = Path(f"/proc/{main_pid}/task/{main_pid}/children").read_text().split()
    pids = [main_pid, *map(int, children)]
    assert len(pids) >= 2  # the main process and its pool child
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in pids} == {10}
    autogroup = Path(f"/proc/{main_pid}/autogroup")
    if autogroup.exists():  # its session's share of the CPU, which autogroup scheduling uses
        assert autogroup.read_text().split()[-1] == "10"
    rt = split_stack.worker("rt")
    assert os.getpriority(os.PRIO_PROCESS, rt.popen.pid) == 0

    photos = sorted((photo_dir / "kaggle").glob("*.jpg"))[:20]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    with split_stack.client() as client:
        job_id = client.post("/jobs", files=files).json()["job_id"]
        assert wait_for_job(client, job_id)["done"] == len(photos)
    assert total(scrape(bulk.metrics_url), "catdog_worker_images_total", queue="bulk") >= 20
    assert total(scrape(rt.metrics_url), "catdog_worker_images_total", queue="bulk") == 0
