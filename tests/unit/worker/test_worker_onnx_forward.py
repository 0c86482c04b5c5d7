"""ONNX Runtime as the forward pass: the same answers as PyTorch, any batch size, a model
with or without its ImageNet head; a graph that disagrees, or a GPU, is refused."""

import pytest
import torch
from PIL import Image

from common.ml.loading import LoadedModel
from common.ml.model import ModelConfig, build_model
from worker import onnx_forward
from worker.engine import InferenceEngine


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    torch.manual_seed(0)
    config = ModelConfig(arch="simple_cnn", image_size=64, resize_size=64)
    return LoadedModel(build_model(config).eval(), config, "catdog", "7", "memory", {})


def _photos(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (90, 70), (i * 25 % 256, 200 - i * 9, 40 + i)) for i in range(count)]


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_a_model_without_an_imagenet_head_answers_as_in_pytorch(
    loaded: LoadedModel, batch_size: int
) -> None:
    images = _photos(7)
    by_torch = InferenceEngine(loaded, "cpu", batch_size).predict(images)
    by_onnx = InferenceEngine(loaded, "cpu", batch_size, runtime="onnxruntime").predict(images)
    for ours, theirs in zip(by_onnx, by_torch, strict=True):
        assert ours.label == theirs.label
        assert ours.pet_probability is None and theirs.pet_probability is None
        assert list(ours.probabilities.values()) == pytest.approx(
            list(theirs.probabilities.values()), abs=1e-5
        )


def test_a_graph_whose_answers_differ_from_pytorch_is_refused(
    loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_call = onnx_forward.OnnxForward.__call__

    def off_by_a_little(self, batch):  # type: ignore[no-untyped-def]
        logits, pets = real_call(self, batch)
        return logits + 0.01, pets

    monkeypatch.setattr(onnx_forward.OnnxForward, "__call__", off_by_a_little)
    with pytest.raises(onnx_forward.OnnxMismatchError, match="logits differ"):
        InferenceEngine(loaded, "cpu", batch_size=2, runtime="onnxruntime")


def test_auto_is_onnx_runtime_on_a_cpu(loaded: LoadedModel) -> None:
    assert InferenceEngine(loaded, "cpu", batch_size=2, runtime="auto").runtime == "onnxruntime"
    assert InferenceEngine(loaded, "cpu", batch_size=2).runtime == "torch"


def test_onnx_runtime_on_a_gpu_and_unknown_runtimes_say_what_to_set(loaded: LoadedModel) -> None:
    with pytest.raises(ValueError, match="CATDOG_INFERENCE_RUNTIME=torch"):
        InferenceEngine(loaded, "cuda", batch_size=2, runtime="onnxruntime")
    with pytest.raises(ValueError, match="auto, torch or onnxruntime"):
        InferenceEngine(loaded, "cpu", batch_size=2, runtime="tensorrt")
