"""The engine: batched forward passes equal one-at-a-time inference; order is kept."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from common.ml.loading import LoadedModel
from common.ml.model import ModelConfig, build_model
from common.ml.preprocessing import preprocess_batch
from common.wire import ModelRef
from worker.engine import InferenceEngine


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    torch.manual_seed(0)
    config = ModelConfig(arch="simple_cnn", image_size=64, resize_size=64)
    model = build_model(config).eval()
    return LoadedModel(model, config, "catdog", "7", "memory", {})


@pytest.fixture(scope="module")
def images(cat_photo: Path, dog_photo: Path) -> list[Image.Image]:
    colours = [Image.new("RGB", (80, 60), (i * 40, 255 - i * 30, 90)) for i in range(5)]
    photos = [Image.open(p).convert("RGB") for p in (cat_photo, dog_photo) if p.exists()]
    return colours + photos


def test_batched_predictions_equal_single_image_inference(
    loaded: LoadedModel, images: list[Image.Image]
) -> None:
    engine = InferenceEngine(loaded, "cpu", batch_size=3)
    predictions = engine.predict(images)
    assert len(predictions) == len(images)
    with torch.inference_mode():
        for image, prediction in zip(images, predictions, strict=True):
            row = torch.softmax(loaded.model(preprocess_batch([image], loaded.config)), 1)[0]
            assert list(prediction.probabilities.values()) == pytest.approx(row.tolist(), abs=1e-6)
            assert prediction.label == ("cat", "dog")[int(row.argmax())]
            assert prediction.probability == pytest.approx(float(row.max()), abs=1e-6)
            assert sum(prediction.probabilities.values()) == pytest.approx(1.0)


def test_warm_up_runs_and_names_the_model(loaded: LoadedModel) -> None:
    engine = InferenceEngine(loaded, "cpu", batch_size=2)
    engine.warm_up()
    assert engine.model == ModelRef("catdog", "7")
    assert engine.predict([]) == []
