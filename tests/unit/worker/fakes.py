"""A fake engine and small images for the task-body tests (no model, no torch)."""

import io
import threading
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


@dataclass
class PreparingFakeEngine(FakeEngine):
    """A FakeEngine that also preprocesses apart (a GPU worker's engine): it records which
    thread prepared each photo and which ran each pass of prepared photos."""

    prepared_in: list[str] = field(default_factory=list)
    passes_in: list[str] = field(default_factory=list)

    def prepare(self, image: Image.Image) -> tuple[str, Image.Image]:
        self.prepared_in.append(threading.current_thread().name)
        return ("prepared", image)

    def predict_tensors(self, tensors: Sequence[tuple[str, Image.Image]]) -> list[Classification]:
        assert all(kind == "prepared" for kind, _ in tensors), "a photo reached a pass unprepared"
        self.passes_in.append(threading.current_thread().name)
        return self.predict([image for _, image in tensors])


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
