"""The inference engine: one loaded model on one device, batched forward passes.

The steps are exactly those of in-process evaluation: `common.imaging.decode_image` (done by
the caller), `common.ml.preprocessing.eval_transform`, the model (run by PyTorch or, by
setting, by ONNX Runtime: worker.onnx_forward), and the softmax at the checkpoint's
temperature (`common.ml.calibration.calibrated_probabilities`). Where the checkpoint keeps
its ImageNet head, each answer also says whether the photo looks like a cat or a dog at all
(`common.ml.open_set`).
"""

import contextlib
from collections.abc import Callable, Sequence
from functools import partial

import torch
from PIL import Image

from common.ml.calibration import calibrated_probabilities
from common.ml.loading import LoadedModel
from common.ml.open_set import classify, looks_like_a_pet
from common.ml.preprocessing import eval_transform
from common.wire import Classification, ModelRef

# A batch (B, 3, S, S) in; the logits (B, C) and the pet probability (B,) or None out.
Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]

AUTOCAST_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_precision(precision: str, device: torch.device, runtime: str) -> str:
    """auto: float16 on a GPU (mixed precision: convolutions in half precision, softmax and
    the answers in float32), float32 elsewhere. ONNX Runtime runs the exported float32 graph."""
    if precision == "auto":
        return "float16" if device.type == "cuda" else "float32"
    if precision not in ("float32", *AUTOCAST_DTYPES):
        raise ValueError(f"unknown precision {precision!r}: auto, float32, float16 or bfloat16")
    if precision != "float32" and runtime != "torch":
        raise ValueError(
            f"precision {precision} needs the torch runtime (CATDOG_INFERENCE_RUNTIME=torch)"
        )
    return precision


class InferenceEngine:
    def __init__(
        self,
        loaded: LoadedModel,
        device: str,
        batch_size: int,
        pet_threshold: float | None = None,
        runtime: str = "torch",
        precision: str = "auto",
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
        self._transform = eval_transform(loaded.config)
        # auto: ONNX Runtime where it runs (the CPU), else PyTorch.
        cpu = self.device.type == "cpu"
        self.runtime = ("onnxruntime" if cpu else "torch") if runtime == "auto" else runtime
        self.precision = resolve_precision(precision, self.device, self.runtime)
        self._forward = self._forward_pass()  # before the move: a GPU is refused first
        loaded.model.to(self.device).eval()

    def _forward_pass(self) -> Forward:
        if self.runtime == "torch":
            return partial(classify, self.loaded.model)
        if self.runtime != "onnxruntime":
            raise ValueError(
                f"unknown inference runtime {self.runtime!r}: auto, torch or onnxruntime"
            )
        if self.device.type != "cpu":
            raise ValueError(
                f"the onnxruntime runtime runs on the CPU, not {self.device.type}; "
                "set CATDOG_INFERENCE_RUNTIME=torch for a GPU worker"
            )
        from worker.onnx_forward import OnnxForward

        # As many threads as the process gives torch (worker.runtime.select_device).
        return OnnxForward(self.loaded, torch.get_num_threads())

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """One decoded image as the (3, S, S) tensor the model takes (the evaluation
        transform); safe to call from several threads at once."""
        return self._transform(image)

    @torch.inference_mode()
    def predict(
        self, images: Sequence[Image.Image], timeout_s: float | None = None
    ) -> list[Classification]:
        """One prediction per image, in order, computed `batch_size` images at a time (in
        this thread, so `timeout_s` cannot apply)."""
        predictions: list[Classification] = []
        for start in range(0, len(images), self.batch_size):
            predictions += self.predict_pass(images[start : start + self.batch_size])
        return predictions

    def predict_tensors(self, tensors: Sequence[torch.Tensor]) -> list[Classification]:
        """Tensors from `prepare`, `batch_size` of them per forward pass."""
        predictions: list[Classification] = []
        for start in range(0, len(tensors), self.batch_size):
            predictions += self.predict_prepared(tensors[start : start + self.batch_size])
        return predictions

    def predict_pass(self, images: Sequence[Image.Image]) -> list[Classification]:
        """All of `images` in one forward pass, whatever `batch_size` says (micro-batches)."""
        return self.predict_prepared([self.prepare(image) for image in images])

    @torch.inference_mode()
    def predict_prepared(self, tensors: Sequence[torch.Tensor]) -> list[Classification]:
        """One forward pass over tensors from `prepare`."""
        batch = torch.stack(list(tensors)).to(self.device)
        with self._autocast():
            logits, pets = self._forward(batch)  # (B, C), (B,)
        logits = logits.float()
        pets = None if pets is None else pets.float()
        probabilities = calibrated_probabilities(logits, self.loaded.config.temperature)
        rows = probabilities.cpu().tolist()  # (B, C)
        pet_list = [None] * len(rows) if pets is None else pets.cpu().tolist()
        return [self._prediction(row, pet) for row, pet in zip(rows, pet_list, strict=True)]

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        dtype = AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

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

    def warm_up(self, largest: int | None = None) -> None:
        """One forward pass at every size from 1 to `largest` (`batch_size` by default), in
        this thread, so that no request is the first of its pass size. On a GPU that first
        pass is slow: CUDA loads kernels lazily, at their first use, and a new batch shape can
        pick kernels no earlier pass used; on the H200 the first pass of each new size took
        1.3-5 s (bench/README.md, GPU). On a CPU it costs a few passes at start."""
        size = self.loaded.config.image_size
        blank = Image.new("RGB", (size, size), (127, 127, 127))
        for n in range(1, (largest or self.batch_size) + 1):
            self.predict_pass([blank] * n)
