"""Fixtures for the serving integration tests: a model checkpoint trained for a few steps on
real photos, the photos themselves (copied out of ../shared/data), and one shared stack
(real redis-server, a real Celery worker with two prefork children, a real uvicorn gateway)
for every test whose settings do not differ. Tests that need other settings start their own.

The fixture model carries a registry-style version (`MODEL_VERSION`), and the shared stack
reads its offline test-set metrics (`OFFLINE_METRICS`) from a real MLflow tracking server in
which the fixture model is registered, so the live-quality gauges compare live numbers with a
test set as they do in production.
"""

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import torch
import torch.nn.functional as F

from common.imaging import decode_image
from common.labels import label_index
from common.ml.checkpoint import load_checkpoint, save_checkpoint
from common.ml.model import ModelConfig, build_model
from common.ml.preprocessing import preprocess_batch
from tests.integration.callbacks import CallbackReceiver
from tests.integration.mlflow_server import register_version, start_mlflow_server
from tests.integration.processes import SHARED_DATA, Stack, start_stack

MB = 1024 * 1024
KAGGLE = SHARED_DATA / "kaggle-dogs-vs-cats" / "train"
PETIMAGES = SHARED_DATA / "petimages-180"

MODEL_NAME, MODEL_VERSION = "catdog", "1"
# What the "evaluate stage" logged for the fixture model (registered in a real MLflow server).
OFFLINE_METRICS = {
    "accuracy": 0.75,
    "f1_macro": 0.74,
    "predicted_cat_share": 0.5,
    "mean_confidence": 0.6,
}

# The shared stack's settings: small chunks so a 200-photo job spans many tasks.
SHARED_SETTINGS = {
    "chunk_size": 8,
    "batch_size": 8,
    "max_job_files": 250,
    "max_job_bytes": 30 * MB,
    "predict_timeout_s": 20,
}


def kaggle_photos(count: int) -> list[Path]:
    """`count` Kaggle photos, half cats and half dogs."""
    half = count // 2
    names = [f"cat.{i}.jpg" for i in range(half)] + [f"dog.{i}.jpg" for i in range(count - half)]
    return [KAGGLE / name for name in names]


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 Kaggle photos and 20 PetImages photos, copied (never written in place)."""
    if not KAGGLE.is_dir():
        pytest.skip(f"the shared photos are not at {SHARED_DATA}")
    target = tmp_path_factory.mktemp("photos")
    (target / "kaggle").mkdir()
    (target / "pet").mkdir()
    for path in kaggle_photos(200):
        shutil.copy(path, target / "kaggle" / path.name)
    for animal in ("Cat", "Dog"):
        for i in range(10):
            shutil.copy(PETIMAGES / animal / f"{i}.jpg", target / "pet" / f"{animal}-{i}.jpg")
    return target


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, photo_dir: Path) -> Path:
    """A small CNN (64 px) trained for a few steps on 32 real photos."""
    torch.manual_seed(0)
    config = ModelConfig(arch="simple_cnn", image_size=64, resize_size=64)
    model = build_model(config)
    paths = sorted((photo_dir / "kaggle").glob("cat.1?.jpg")) + sorted(
        (photo_dir / "kaggle").glob("dog.1?.jpg")
    )
    images = [decode_image(p.read_bytes()).image for p in paths]
    x = preprocess_batch(images, config)  # (32, 3, 64, 64)
    y = torch.tensor([label_index(p.name.split(".")[0]) for p in paths])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine, 2 threads are several times slower
    try:
        for _ in range(5):
            loss = F.cross_entropy(model(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("model") / "checkpoint.pt"
    save_checkpoint(path, model, config, {"model_name": MODEL_NAME, "model_version": MODEL_VERSION})
    return path


@pytest.fixture(scope="session")
def in_process() -> Callable[[Path, list[bytes]], list[dict[str, float]]]:
    """Reference inference: the checkpoint loaded here, one image at a time."""

    def predict(checkpoint_path: Path, images: list[bytes]) -> list[dict[str, float]]:
        model, config, _ = load_checkpoint(checkpoint_path)
        out = []
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the stack's workers share these cores: no oversubscription
        try:
            with torch.inference_mode():
                for data in images:
                    x = preprocess_batch([decode_image(data).image], config)  # (1, 3, S, S)
                    row = torch.softmax(model(x), dim=1)[0].tolist()
                    out.append(dict(zip(config.classes, row, strict=True)))
        finally:
            torch.set_num_threads(threads)
        return out

    return predict


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow server (its own SQLite store) where the fixture model is registered
    with its test-set metrics; never the project's mlflow.db."""
    proc, url = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    assert register_version(url, MODEL_NAME, OFFLINE_METRICS) == MODEL_VERSION
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, mlflow_url: str
) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("shared-stack"),
        str(checkpoint),
        workers=1,
        mlflow_tracking_uri=mlflow_url,
        **SHARED_SETTINGS,
    )
    yield running
    running.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client() as http:
        yield http


@pytest.fixture
def receiver() -> Iterator[Callable[[list[int]], CallbackReceiver]]:
    """Makes callback receivers (each answering the given statuses, then 200)."""
    made: list[CallbackReceiver] = []

    def make(statuses: list[int]) -> CallbackReceiver:
        made.append(CallbackReceiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.server.shutdown()
