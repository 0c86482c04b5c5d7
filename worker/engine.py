"""The inference engine: one loaded model on one device, batched forward passes.

The steps are exactly those of in-process evaluation: `common.imaging.decode_image` (done by
the caller), `common.ml.preprocessing.preprocess_batch`, the model, and the softmax at the
checkpoint's temperature (`common.ml.calibration.calibrated_probabilities`). Where the
checkpoint keeps its ImageNet head, each answer also says whether the photo looks like a cat
or a dog at all (`common.ml.open_set`).
"""

from collections.abc import Sequence

import torch
from PIL import Image

from common.ml.calibration import calibrated_probabilities
from common.ml.loading import LoadedModel
from common.ml.open_set import classify, looks_like_a_pet
from common.ml.preprocessing import preprocess_batch
from common.wire import Classification, ModelRef


class InferenceEngine:
    def __init__(
        self,
        loaded: LoadedModel,
        device: str,
        batch_size: int,
        pet_threshold: float | None = None,
    ) -> None:
        self.loaded = loaded
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.classes = loaded.config.classes
        # A setting overrides the threshold chosen in training.
        self.pet_threshold = (
            pet_threshold if pet_threshold is not None else loaded.config.pet_threshold
        )
        self.model = ModelRef(loaded.name, loaded.version)
        loaded.model.to(self.device).eval()

    @torch.inference_mode()
    def predict(self, images: Sequence[Image.Image]) -> list[Classification]:
        """One prediction per image, in order, computed `batch_size` images at a time."""
        predictions: list[Classification] = []
        for start in range(0, len(images), self.batch_size):
            batch = preprocess_batch(images[start : start + self.batch_size], self.loaded.config)
            logits, pets = classify(self.loaded.model, batch.to(self.device))  # (B, C), (B,)
            temperature = self.loaded.config.temperature
            probabilities = calibrated_probabilities(logits, temperature).cpu().tolist()  # (B, C)
            pet_list = [None] * len(probabilities) if pets is None else pets.cpu().tolist()
            predictions += [
                self._prediction(row, pet) for row, pet in zip(probabilities, pet_list, strict=True)
            ]
        return predictions

    def _prediction(self, row: list[float], pet: float | None) -> Classification:
        best = max(range(len(row)), key=row.__getitem__)
        detected = None
        if pet is not None and self.pet_threshold is not None:
            detected = looks_like_a_pet(pet, self.pet_threshold)
        return Classification(
            label=self.classes[best],
            probability=row[best],
            probabilities=dict(zip(self.classes, row, strict=True)),
            pet_probability=pet,
            pet_detected=detected,
            model=self.model,
        )

    def warm_up(self) -> None:
        """One full batch through the model, so the first real request pays no set-up cost."""
        size = self.loaded.config.image_size
        blank = Image.new("RGB", (size, size), (127, 127, 127))
        self.predict([blank] * min(self.batch_size, 4))
