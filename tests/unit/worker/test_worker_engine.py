"""The engine: batched forward passes equal one-at-a-time inference; order is kept."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from common.ml.loading import LoadedModel
from common.ml.model import ModelConfig, build_model
from common.ml.preprocessing import preprocess_batch
from common.wire import ModelRef
from worker.engine import InferenceEngine, resolve_precision


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


def test_warm_up_runs_a_pass_of_every_size_a_worker_can_run(loaded: LoadedModel) -> None:
    """No request is the first pass of its size (a GPU loads kernels at their first use):
    sizes 1 to batch_size, or to the largest micro-batch when it is named."""
    engine = InferenceEngine(loaded, "cpu", batch_size=3)
    forward, sizes = engine._forward, []

    def counting(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        sizes.append(batch.shape[0])
        return forward(batch)

    engine._forward = counting
    engine.warm_up()
    assert sizes == [1, 2, 3]
    sizes.clear()
    engine.warm_up(largest=5)
    assert sizes == [1, 2, 3, 4, 5]
    assert engine.model == ModelRef("catdog", "7")
    assert engine.predict([]) == []


def test_a_checkpoint_with_a_temperature_serves_what_evaluation_scores(
    tmp_path: Path, cat_photo: Path, dog_photo: Path
) -> None:
    """Saved with T = 2.5 and loaded the way a worker loads a file, the model serves
    softmax(logits / 2.5): the probabilities training.evaluate scores for the same files."""
    from common.imaging import decode_image
    from common.ml.calibration import calibrated_probabilities
    from common.ml.checkpoint import save_checkpoint
    from common.ml.loading import load_model
    from training.dataset import Sample
    from training.evaluate import predict_logits

    torch.manual_seed(0)
    config = ModelConfig(arch="simple_cnn", image_size=64, resize_size=64, temperature=2.5)
    model = build_model(config)
    with torch.no_grad():
        model.head[1].bias.copy_(torch.tensor([2.0, -2.0]))  # confident: p(cat) ~0.98 at T = 1
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, config)
    loaded = load_model(str(path), tracking_uri="unused-for-a-file", device="cpu")
    photos = [cat_photo, dog_photo]

    served = InferenceEngine(loaded, "cpu", batch_size=2).predict(
        [decode_image(p.read_bytes()).image for p in photos]
    )

    samples = [Sample(p, 0, "") for p in photos]
    logits, _, _ = predict_logits(loaded.model, loaded.config, samples, torch.device("cpu"), 2, 0)
    evaluated = calibrated_probabilities(logits, loaded.config.temperature)
    uncalibrated = torch.softmax(logits, dim=1)
    for prediction, calibrated, raw in zip(served, evaluated, uncalibrated, strict=True):
        assert list(prediction.probabilities.values()) == pytest.approx(
            calibrated.tolist(), abs=1e-6
        )
        assert list(prediction.probabilities.values()) != pytest.approx(raw.tolist(), abs=0.05)


def test_mixed_precision_answers_as_float32_does_within_half_precision_error(
    loaded: LoadedModel, images: list[Image.Image]
) -> None:
    """CATDOG_PRECISION=bfloat16 runs the forward pass under autocast (a GPU worker's
    float16 default is the same code on CUDA): the answers stay float32 and near float32's."""
    full = InferenceEngine(loaded, "cpu", batch_size=4, runtime="torch").predict(images)
    half = InferenceEngine(
        loaded, "cpu", batch_size=4, runtime="torch", precision="bfloat16"
    ).predict(images)
    gaps = [abs(a.probability - b.probability) for a, b in zip(full, half, strict=True)]
    assert max(gaps) < 0.05
    assert max(gaps) > 1e-6, "the half-precision pass ran in float32"
    assert all(isinstance(p, float) for a in half for p in a.probabilities.values())
    assert all(sum(a.probabilities.values()) == pytest.approx(1.0) for a in half)


def test_precision_defaults_to_half_on_a_gpu_only_and_needs_the_torch_runtime(
    loaded: LoadedModel,
) -> None:
    assert resolve_precision("auto", torch.device("cuda"), "torch") == "float16"
    assert InferenceEngine(loaded, "cpu", batch_size=2).precision == "float32"
    with pytest.raises(ValueError, match="needs the torch runtime"):
        InferenceEngine(loaded, "cpu", batch_size=2, runtime="onnxruntime", precision="float16")
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", torch.device("cpu"), "torch")
