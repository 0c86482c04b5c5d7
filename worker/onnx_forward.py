"""ONNX Runtime as the engine of the forward pass (`CATDOG_INFERENCE_RUNTIME=onnxruntime`).

The checkpoint stays a PyTorch one: at load the worker exports the model it loaded (both
heads: the cat/dog logits and, where the checkpoint keeps it, the pet probability) to ONNX
in memory (8 s for the served Lite1) and runs that graph in ONNX Runtime on the CPU.
Everything around the forward pass (decode, the evaluation transform, the softmax at the
checkpoint's temperature, the open-set flag) is the PyTorch engine's own, so only the
forward pass changes.

On this project's 2-core CPU the served EfficientNet-Lite1 ran its forward pass 2-5 x
faster in ONNX Runtime than in PyTorch, with the same label for every photo
(bench/onnx_runtime.py, bench/results/). Before a load is accepted, `OnnxForward` checks
its answers against PyTorch's on the same tensors; a graph that disagrees is refused, and
the worker keeps the model it has.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import nn

from common.ml.loading import LoadedModel
from common.ml.open_set import classify

log = logging.getLogger(__name__)

# Largest difference in any logit or pet probability between the two runtimes that a load
# accepts (measured: under 3e-6 on real photos; float32 kernels differ in summation order).
TOLERANCE = 1e-3
# The largest batch the graph takes (a bound the exporter needs; a worker's passes are
# `batch_size` or `max_batch_size` images, far fewer).
MAX_BATCH = 1024


class OnnxMismatchError(RuntimeError):
    """ONNX Runtime's answers differ from PyTorch's for the same tensors."""


class _Heads(nn.Module):
    """The forward pass `classify` runs, as one module whose outputs are plain tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, pets = classify(self.model, batch)
        return (logits,) if pets is None else (logits, pets)


def export(loaded: LoadedModel) -> bytes:
    """The loaded model's forward pass as an ONNX graph for any batch size.

    torch.onnx's dynamo exporter: 8.3 s for the served Lite1 on one thread. The TorchScript
    exporter (`dynamo=False`) took 1.5 s, but ONNX Runtime ran its graph at 51 img/s on one
    thread against 79 for this one (measured; bench/README.md)."""
    size = loaded.config.image_size
    program = torch.onnx.export(
        _Heads(loaded.model).eval(),
        (torch.zeros(2, 3, size, size),),
        input_names=["images"],
        dynamic_shapes={"batch": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}},
        dynamo=True,
        verbose=False,
    )
    assert program is not None  # dynamo=True always returns the program
    return bytes(program.model_proto.SerializeToString())


def session(graph: bytes, threads: int) -> Any:
    """An ONNX Runtime session of `graph` on the CPU with `threads` threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


class OnnxForward:
    """`classify` for the engine, run by ONNX Runtime: a batch in, (logits, pets) out."""

    def __init__(self, loaded: LoadedModel, threads: int) -> None:
        started = time.perf_counter()
        self._session = session(export(loaded), threads)
        self._input = self._session.get_inputs()[0].name
        self._check_against(loaded)
        log.info(
            "model exported to ONNX Runtime",
            extra={"threads": threads, "seconds": round(time.perf_counter() - started, 2)},
        )

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        outputs = self._session.run(None, {self._input: batch.cpu().numpy()})
        logits = torch.from_numpy(outputs[0])
        return logits, torch.from_numpy(outputs[1]) if len(outputs) > 1 else None

    def _check_against(self, loaded: LoadedModel) -> None:
        """Refuse a graph whose answers are not PyTorch's (an exporter or kernel bug)."""
        size = loaded.config.image_size
        generator = torch.Generator().manual_seed(0)
        batch = torch.randn(3, 3, size, size, generator=generator)
        with torch.inference_mode():
            expected = classify(loaded.model, batch)
        got = self(batch)
        for name, want, have in zip(("logits", "pet probability"), expected, got, strict=True):
            if want is None and have is None:  # a model without its ImageNet head
                continue
            diff = (
                float("inf") if want is None or have is None else float((want - have).abs().max())
            )
            if diff > TOLERANCE:
                raise OnnxMismatchError(
                    f"ONNX Runtime's {name} differ from PyTorch's by {diff:.2e} "
                    f"(more than {TOLERANCE}); set CATDOG_INFERENCE_RUNTIME=torch"
                )
