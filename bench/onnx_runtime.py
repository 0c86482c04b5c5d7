"""PyTorch against ONNX Runtime on the served model: the same answers? Which is faster here?

Loads the served checkpoint as a worker does (bench.ceiling.load_engine), exports its
forward pass the way a worker does (worker.onnx_forward: both heads, the cat/dog logits and
the pet probability), checks ONNX Runtime's answers against PyTorch's on real photos (the
same label for every photo; the largest probability differences), then times the forward
pass alone on the same prepared tensors by runtime, thread count and batch size.

    python bench/onnx_runtime.py --photos 96
"""

import argparse
import datetime
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ceiling import load_engine, photos  # noqa: E402
from reporting import write_results  # noqa: E402


def compare(loaded: Any, onnx: Callable[..., Any], batch: Any) -> dict[str, Any]:
    import torch

    from common.ml.calibration import calibrated_probabilities
    from common.ml.open_set import classify

    with torch.inference_mode():
        logits, pets = classify(loaded.model, batch)
        onnx_logits, onnx_pets = onnx(batch)
    temperature = loaded.config.temperature
    by_torch = calibrated_probabilities(logits, temperature)
    by_onnx = calibrated_probabilities(onnx_logits, temperature)
    return {
        "photos": len(batch),
        "same_label": int((by_torch.argmax(1) == by_onnx.argmax(1)).sum()),
        "max_probability_diff": float((by_torch - by_onnx).abs().max()),
        "max_pet_probability_diff": float((pets - onnx_pets).abs().max()),
    }


def images_per_s(forward: Callable[..., Any], prepared: list[Any], size: int) -> float:
    import torch

    with torch.inference_mode():
        forward(torch.stack(prepared[:size]))  # this batch shape once, untimed
        started = time.perf_counter()
        for start in range(0, len(prepared), size):
            forward(torch.stack(prepared[start : start + size]))
    return round(len(prepared) / (time.perf_counter() - started), 2)


def markdown(result: dict[str, Any]) -> str:
    check = result["outputs_equal_check"]
    lines = [
        f"# PyTorch against ONNX Runtime, {result['date']}",
        "",
        f"{result['model']} ({result['arch']}, {result['image_size']} px), the forward pass "
        "alone on the same prepared tensors (`bench/onnx_runtime.py`), the graph exported as "
        f"a worker exports it (`worker/onnx_forward.py`, {result['export_s']} s).",
        "",
        f"Outputs: the same label for {check['same_label']} of {check['photos']} photos; "
        f"largest probability difference {check['max_probability_diff']:.2e}, pet "
        f"probability {check['max_pet_probability_diff']:.2e}.",
        "",
        "| threads | batch | PyTorch img/s | ONNX Runtime img/s | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in result["forward_alone"]:
        ratio = row["ort_img_s"] / row["torch_img_s"]
        lines.append(
            f"| {row['threads']} | {row['batch']} | {row['torch_img_s']} | "
            f"{row['ort_img_s']} | {ratio:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=96)
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (repeatable)")
    args = parser.parse_args(argv)
    from functools import partial

    import torch

    from common.imaging import decode_image
    from common.ml.open_set import classify
    from worker.onnx_forward import OnnxForward

    engine = load_engine(threads=1)
    loaded = engine.loaded
    prepared = [engine.prepare(decode_image(p.read_bytes()).image) for p in photos(args.photos)]
    started = time.perf_counter()
    check = compare(loaded, OnnxForward(loaded, 1), torch.stack(prepared))
    export_s = round(time.perf_counter() - started, 2)
    print(check, flush=True)
    rows: list[dict[str, Any]] = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        onnx = OnnxForward(loaded, threads)
        for size in args.batch or (1, 2, 4, 8, 16):
            rows.append(
                {
                    "threads": threads,
                    "batch": size,
                    "torch_img_s": images_per_s(partial(classify, loaded.model), prepared, size),
                    "ort_img_s": images_per_s(onnx, prepared, size),
                }
            )
            print(rows[-1], flush=True)
    result = {
        "date": datetime.date.today().isoformat(),
        "model": f"{engine.model.name} v{engine.model.version}",
        "arch": loaded.config.arch,
        "image_size": loaded.config.image_size,
        "export_s": export_s,
        "outputs_equal_check": check,
        "forward_alone": rows,
    }
    write_results("onnx-runtime", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
