"""A fake engine and small images for the task-body tests (no model, no torch)."""

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image
from prometheus_client import REGISTRY

from common.imaging import ImageLimits
from common.wire import Classification, ModelRef

LIMITS = ImageLimits()
RED = (250, 0, 0)
FAKE_MODEL = ModelRef("catdog", "fake-1")


def jpeg(color: tuple[int, int, int] = (10, 200, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), color).save(buffer, "JPEG")
    return buffer.getvalue()


def red_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), RED).save(buffer, "PNG")  # lossless: the colour stays exact
    return buffer.getvalue()


@dataclass
class FakeEngine:
    """Says `dog`; records every batch; can fail on a batch holding a red image."""

    fail_on_red: bool = False
    batches: list[int] = field(default_factory=list)
    on_batch: Callable[[], None] | None = None
    model: ModelRef = FAKE_MODEL

    def predict(
        self, images: Sequence[Image.Image], timeout_s: float | None = None
    ) -> list[Classification]:
        self.batches.append(len(images))
        if self.on_batch:
            self.on_batch()
        if self.fail_on_red and any(img.getpixel((0, 0)) == RED for img in images):
            raise RuntimeError("kernel crashed")
        dog = {"cat": 0.2, "dog": 0.8}
        return [
            Classification(label="dog", probability=0.8, probabilities=dog, model=self.model)
        ] * len(images)

    predict_pass = predict  # a fake pass is any size


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
