"""A model-owning process: it loads and warms the model, beats, and a failed (re)load keeps
the model it had."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from common.errors import ModelNotAvailableError
from common.ml.checkpoint import save_checkpoint
from common.ml.model import ModelConfig, build_model
from common.settings import Settings
from common.store import model_generation, workers
from common.store.ops import Store
from tests.integration.processes import wait_until
from worker.runtime import Identity, ModelHost, cpu_threads


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    config = ModelConfig(arch="simple_cnn", image_size=32, resize_size=32)
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model(config), config, {"model_version": "v1"})
    return path


def host(store: Store, model_uri: str) -> ModelHost:
    settings = Settings(model_uri=model_uri, device="cpu", heartbeat_interval_s=0.2)
    return ModelHost(settings, Identity("w@test", ["realtime", "bulk"], 2, "prefork"), store)


def test_cpu_threads_share_the_cores_between_processes() -> None:
    assert cpu_threads(1) >= cpu_threads(2) >= 1
    assert cpu_threads(10_000) == 1


def test_a_started_host_serves_its_model_and_reports_it(store: Store, checkpoint: Path) -> None:
    model_host = host(store, str(checkpoint))
    model_host.start()
    try:
        assert model_host.engine().model.version == "v1"
        assert torch.get_num_threads() == cpu_threads(2)
        [beat] = store(workers.live())
        assert (beat.state, beat.model and beat.model.version, beat.queues) == (
            "ready",
            "v1",
            ["realtime", "bulk"],
        )
    finally:
        model_host.stop()
    assert store(workers.live()) == []


def test_a_host_without_a_model_reports_the_failure(store: Store, tmp_path: Path) -> None:
    model_host = host(store, str(tmp_path / "missing.pt"))
    model_host.start()
    try:
        with pytest.raises(ModelNotAvailableError):
            model_host.engine()
        [beat] = store(workers.live())
        assert beat.state == "failed" and "no checkpoint" in (beat.error or "")
    finally:
        model_host.stop()


def test_a_reload_swaps_the_model_and_a_failed_one_keeps_it(store: Store, checkpoint: Path) -> None:
    model_host = host(store, str(checkpoint))
    model_host.start()
    try:
        config = ModelConfig(arch="simple_cnn", image_size=32, resize_size=32)
        save_checkpoint(checkpoint, build_model(config), config, {"model_version": "v2"})
        generation = store(model_generation.bump())
        wait_until(lambda: model_host.heartbeat().generation == generation, 10, "the reload")
        assert model_host.engine().model.version == "v2"

        checkpoint.write_bytes(b"corrupt")
        generation = store(model_generation.bump())
        wait_until(lambda: model_host.heartbeat().generation == generation, 10, "the reload")
        assert model_host.engine().model.version == "v2"
        beat = model_host.heartbeat()
        assert beat.state == "ready" and beat.error
    finally:
        model_host.stop()


def test_worker_threads_overrides_the_core_share(store: Store, checkpoint: Path) -> None:
    settings = Settings(model_uri=str(checkpoint), device="cpu", worker_threads=1)
    model_host = ModelHost(settings, Identity("w@test", ["bulk"], 1, "prefork"), store)
    model_host.start()
    try:
        assert torch.get_num_threads() == 1
    finally:
        model_host.stop()
