"""What each EfficientNet-Lite backbone costs on this machine: in-process forward-pass
throughput (images/s) at its native input size, for the batch sizes a worker uses.

    python bench/backbones.py                      # torch threads 2, batches 4 and 16
    python bench/backbones.py --threads 2 --images 16 --repeats 3

Forward passes only (the serving path: eval mode, inference mode, float32, the model's own
memory format), on random inputs: preprocessing and decoding are not included. Each arch and
batch size runs one warm-up batch, then `--repeats` timed runs of `--images` images, in
rounds over every case; the table gives the best run (on a shared machine, the one least
slowed by other work) and the median. Writes bench/results/<date>-backbones.json and a markdown table beside it, with the
one-minute load average before and after.
"""

import argparse
import os
import platform
import statistics
import time
from datetime import date
from typing import Any

import torch
from reporting import write_results

from common.ml.model import LITE_VARIANTS, ModelConfig, build_model


@torch.inference_mode()
def images_per_second(model: torch.nn.Module, x: torch.Tensor, images: int) -> float:
    """Throughput of one timed run of `images` images, `x` (B, 3, S, S) at a time."""
    batches = max(1, images // len(x))
    started = time.perf_counter()
    for _ in range(batches):
        model(x)
    return batches * len(x) / (time.perf_counter() - started)


@torch.inference_mode()
def run(threads: int, batches: list[int], images: int, repeats: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    cases = []  # (arch, variant, model, input batch)
    for arch, variant in LITE_VARIANTS.items():
        size = variant.input_size
        model = build_model(ModelConfig(arch=arch, image_size=size, resize_size=size)).eval()
        for batch in batches:
            x = torch.randn(batch, 3, size, size)
            model(x)  # warm-up: first-call allocations and kernel choice
            cases.append((arch, variant, model, x))
    # Rounds over every case in turn, so other work on a shared machine slows each alike.
    rates: list[list[float]] = [[] for _ in cases]
    for _ in range(repeats):
        for case_rates, (_, _, model, x) in zip(rates, cases, strict=True):
            case_rates.append(images_per_second(model, x, images))
    rows = []
    for case_rates, (arch, variant, model, x) in zip(rates, cases, strict=True):
        rows.append(
            {
                "arch": arch,
                "input_size": variant.input_size,
                "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                "batch": len(x),
                "images_per_s_best": round(max(case_rates), 1),
                "images_per_s_median": round(statistics.median(case_rates), 1),
                "images_per_s_runs": [round(r, 1) for r in case_rates],
            }
        )
    return {
        "date": date.today().isoformat(),
        "torch": torch.__version__,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "images_per_run": images,
        "repeats": repeats,
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = result["rows"]
    lines = [
        f"Forward-pass throughput, {result['date']}, torch {result['torch']}, "
        f"{result['threads']} threads of {result['cpu_count']} CPUs, "
        f"best and median of {result['repeats']} runs of {result['images_per_run']} images "
        "after one warm-up batch; "
        f"1-min load average {result['load_average_1m_before']} before, "
        f"{result['load_average_1m_after']} after.",
    ]
    busiest = max(result["load_average_1m_before"], result["load_average_1m_after"])
    if busiest > (result["cpu_count"] or 1):
        lines.append(
            "More work was runnable than there are CPUs: the machine was shared, so these "
            "figures are lower bounds, and only their order is firm."
        )
    lines += [
        "",
        "| arch | input | params (M) | batch | images/s, best | images/s, median |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['arch']} | {r['input_size']} | {r['params_m']} | {r['batch']} | "
        f"{r['images_per_s_best']} | {r['images_per_s_median']} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--images", type=int, default=16, help="images per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = run(args.threads, args.batches, args.images, args.repeats)
    write_results("backbones", result, markdown(result))


if __name__ == "__main__":
    main()
