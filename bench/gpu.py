"""The GPU harness: the served model on one GPU, in one process and through the stack.

Run by bench/gpu.sh on a machine with a GPU (bench/README.md, "GPU"); nothing here runs in
the test suite. Two parts, each written to the results as soon as it is measured:

1. In one process (`worker.engine.InferenceEngine` on `cuda`, as a GPU worker builds it):
   decode + preprocess of the photos in one thread and in 16; the forward pass alone by
   batch size in float32 and in float16 mixed precision (the GPU worker's default,
   CATDOG_PRECISION=auto); the two precisions' answers on every photo.
2. Through the stack (real redis-server, one Celery GPU worker, the gateway, started by the
   integration tests' process helpers): the worker is one process with a threads pool of 16
   whose /predict requests share micro-batched forward passes. /predict at concurrency 1
   and 16 with micro-batching (CATDOG_MAX_BATCH_SIZE=16), then the same worker restarted
   with CATDOG_MAX_BATCH_SIZE=1, every request its own forward pass, at concurrency 16.
   The target (issue 9): batched at least 3 x batch-1 throughput at concurrency 16, with a
   p95 no worse.

    python bench/gpu.py --model CHECKPOINT --photos DIR [--commit SHA] [--seconds 15]
"""

import argparse
import asyncio
import json
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
# The integration tests' helpers start real processes: the harness runs the same stack.
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from ceiling import photos, rate  # noqa: E402
from load import cpu_s, predict_load, rss_mb  # noqa: E402
from reporting import write_results  # noqa: E402
from serving import machine  # noqa: E402

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
PRECISIONS = ("float32", "float16")
THREADS = 16  # the GPU worker's pool (docker-compose.yml: REALTIME_THREADS)
BATCHED = 16  # its CATDOG_MAX_BATCH_SIZE for the batched run: one pass can take every thread
# The stack's runs: (name, max batch, GPU worker processes). The last two are not the
# target's comparison: they ask whether one process (its GIL) is what limits the batched path.
RUNS = (
    ("batched", BATCHED, 1),
    ("batch_1", 1, 1),
    ("batched_2_processes", BATCHED, 2),
    ("batched_4_processes", BATCHED, 4),
)
TIMED_S = 1.0  # each forward-pass figure: passes over the photos for at least this long


def gpu(device: str) -> dict[str, Any]:
    import torch

    if device != "cuda":  # trying the harness on a machine without one
        return {
            "gpu": f"no GPU ({device})",
            "nvidia_smi": "",
            "torch": torch.__version__,
            "cuda": None,
            "python": platform.python_version(),
        }

    query = "name,driver_version,memory.total"
    smi = subprocess.run(
        ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "gpu": torch.cuda.get_device_name(0),
        "nvidia_smi": smi,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }


def timed(work: Callable[[], int]) -> dict[str, float]:
    """Call `work` (it returns how many images it did) until TIMED_S has passed."""
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < TIMED_S:
        done += work()
    return rate(done, elapsed)


def in_process(model: str, datas: list[bytes], device: str) -> dict[str, Any]:
    import torch

    from common.imaging import decode_image
    from common.ml.loading import load_model
    from worker.engine import InferenceEngine

    loaded = load_model(model, "", device)
    engines = {
        p: InferenceEngine(loaded, device, 64, runtime="torch", precision=p) for p in PRECISIONS
    }
    engine = engines["float32"]

    def prepare(data: bytes) -> Any:
        return engine.prepare(decode_image(data).image)

    started = time.perf_counter()
    prepared = [prepare(data) for data in datas]
    one_thread = rate(len(datas), time.perf_counter() - started)
    with ThreadPoolExecutor(THREADS) as pool:
        started = time.perf_counter()
        list(pool.map(prepare, datas))
        many_threads = rate(len(datas), time.perf_counter() - started)

    forward: dict[str, dict[str, Any]] = {}
    for precision, each in engines.items():
        each.warm_up(largest=1)  # each timed shape is first run once, untimed
        forward[precision] = {}
        for size in (size for size in BATCH_SIZES if size <= len(prepared)):
            batches = [prepared[i : i + size] for i in range(0, len(prepared) - size + 1, size)]
            each.predict_prepared(batches[0])  # this shape once, untimed

            def passes(each: Any = each, batches: list[Any] = batches) -> int:
                return sum(len(each.predict_prepared(batch)) for batch in batches)

            forward[precision][str(size)] = {**timed(passes), "batch": size}
            print(f"  forward {precision} batch {size}: {forward[precision][str(size)]}")

    answers: dict[str, list[Any]] = {p: [] for p in PRECISIONS}
    for p, each in engines.items():
        for start in range(0, len(prepared), 32):
            answers[p] += each.predict_prepared(prepared[start : start + 32])
    pairs = list(zip(answers["float32"], answers["float16"], strict=True))
    return {
        "model": f"{engine.model.name} v{engine.model.version}",
        "arch": loaded.config.arch,
        "image_size": loaded.config.image_size,
        "photos": len(datas),
        "preprocess": {"1_thread": one_thread, f"{THREADS}_threads": many_threads},
        "forward": forward,
        "float16_against_float32": {
            "labels_equal": sum(a.label == b.label for a, b in pairs),
            "photos": len(pairs),
            "max_probability_difference": max(abs(a.probability - b.probability) for a, b in pairs),
            "max_pet_probability_difference": max(
                abs((a.pet_probability or 0) - (b.pet_probability or 0)) for a, b in pairs
            ),
        },
        "gpu_memory_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if device == "cuda"
        else None,
    }


async def for_seconds(url: str, datas: list[bytes], concurrency: int, seconds: float) -> Any:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return await predict_load(url, datas, concurrency, 0, stop=stop)


def batches_seen(metrics_urls: list[str]) -> dict[str, float]:
    """The workers' realtime forward passes so far: how many, their images and seconds."""
    from processes import scrape, total

    seen = {"passes": 0.0, "images": 0.0, "seconds": 0.0}
    for url in metrics_urls:
        samples = scrape(url)
        seen["passes"] += total(samples, "catdog_worker_batch_size_count", queue="realtime")
        seen["images"] += total(samples, "catdog_worker_batch_size_sum", queue="realtime")
        seen["seconds"] += total(samples, "catdog_worker_batch_seconds_sum", queue="realtime")
    return seen


def between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    passes = after["passes"] - before["passes"]
    return {
        "forward_passes": passes,
        "mean_batch": round((after["images"] - before["images"]) / passes, 2) if passes else 0,
        "mean_pass_ms": round(1000 * (after["seconds"] - before["seconds"]) / passes, 2)
        if passes
        else 0,
    }


def through_stack(
    model: str, datas: list[bytes], device: str, log_dir: Path, seconds: float
) -> dict[str, Any]:
    from processes import start_stack

    stack = start_stack(log_dir, model, workers=0)
    gateway = next(p for p in stack.processes if p.name.startswith("gateway"))
    runs: dict[str, Any] = {}
    try:
        for name, max_batch, processes in RUNS:
            workers = [
                stack.add_worker(
                    f"gpu-{name}-{n}",
                    THREADS,
                    pool="threads",
                    device=device,
                    batch_size=max_batch,  # as docker-compose.yml's worker-gpu
                    max_batch_size=max_batch,
                )
                for n in range(processes)
            ]
            urls = [w.metrics_url for w in workers if w.metrics_url is not None]
            asyncio.run(predict_load(stack.url, datas, 4, 64))  # warm connections and shapes
            points: dict[str, Any] = {"max_batch_size": max_batch, "processes": processes}
            pids = {"gateway": [gateway.popen.pid], "worker": [w.popen.pid for w in workers]}
            for concurrency in (1, THREADS) if name == "batched" else (THREADS,):
                before = batches_seen(urls)
                cpu_before = {k: sum(map(cpu_s, each)) for k, each in pids.items()}
                run = asyncio.run(for_seconds(stack.url, datas, concurrency, seconds))
                points[str(concurrency)] = {
                    **run.summary(),
                    **between(before, batches_seen(urls)),
                    # Cores each side kept busy: which one is the limit.
                    **{
                        f"{k}_cores_busy": round(
                            (sum(map(cpu_s, each)) - cpu_before[k]) / run.seconds, 2
                        )
                        for k, each in pids.items()
                    },
                }
                print(f"  {name} concurrency {concurrency}: {points[str(concurrency)]}")
            points["worker_rss_mb"] = sum(rss_mb(w.popen.pid) for w in workers)
            runs[name] = points
            for worker in workers:
                worker.stop()
    finally:
        stack.stop()
    return runs


def verdict(runs: dict[str, Any]) -> dict[str, Any]:
    batched, single = runs["batched"][str(THREADS)], runs["batch_1"][str(THREADS)]
    ratio = batched["images_per_s"] / single["images_per_s"] if single["images_per_s"] else 0
    return {
        "throughput_ratio": round(ratio, 2),
        "p95_batched_ms": batched["p95_ms"],
        "p95_batch_1_ms": single["p95_ms"],
        "met": ratio >= 3 and batched["p95_ms"] <= single["p95_ms"],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# GPU harness, {result['date']}",
        "",
        f"{result['device']['gpu']} ({result['device']['nvidia_smi']}), torch "
        f"{result['device']['torch']} (CUDA {result['device']['cuda']}), "
        f"{result['machine']['cores']} CPU cores ({result['machine']['cpu']}), commit "
        f"{result['machine']['commit']}. `bash bench/gpu.sh` (bench/README.md, GPU).",
        "",
    ]
    if ip := result.get("in_process"):
        lines += [
            f"## In one process: {ip['model']} ({ip['arch']}, {ip['image_size']} px), "
            f"{ip['photos']} photos",
            "",
            f"Decode + preprocess: {ip['preprocess']['1_thread']['images_per_s']} img/s in one "
            f"thread, {ip['preprocess'][f'{THREADS}_threads']['images_per_s']} in {THREADS}.",
            "",
            "| batch | " + " | ".join(f"forward {p} img/s" for p in PRECISIONS) + " |",
            "| --- | " + " | ".join("---" for _ in PRECISIONS) + " |",
        ]
        for size in ip["forward"][PRECISIONS[0]]:
            cells = [str(ip["forward"][p][size]["images_per_s"]) for p in PRECISIONS]
            lines.append(f"| {size} | " + " | ".join(cells) + " |")
        agree = ip["float16_against_float32"]
        lines += [
            "",
            f"float16 against float32: the same label for {agree['labels_equal']} of "
            f"{agree['photos']} photos, probabilities at most "
            f"{agree['max_probability_difference']:.2e} apart (pet probability "
            f"{agree['max_pet_probability_difference']:.2e}).",
            "",
        ]
    if runs := result.get("stack"):
        lines += [
            f"## Through the stack: GPU workers, each a threads pool of {THREADS}",
            "",
            "| run | concurrency | img/s | p50 ms | p95 ms | p99 ms | mean batch | pass ms "
            "| gateway cores | worker cores |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, points in runs.items():
            for concurrency in ("1", str(THREADS)):
                if p := points.get(concurrency):
                    lines.append(
                        f"| {name} (max batch {points['max_batch_size']}, "
                        f"{points['processes']} process(es)) | {concurrency} | "
                        f"{p['images_per_s']} | {p['p50_ms']} | {p['p95_ms']} | {p['p99_ms']} | "
                        f"{p['mean_batch']} | {p['mean_pass_ms']} | "
                        f"{p['gateway_cores_busy']} | {p['worker_cores_busy']} |"
                    )
        v = result["verdict"]
        lines += [
            "",
            f"Target, batched at least 3 x batch-1 at concurrency {THREADS} with a p95 no "
            f"worse: {v['throughput_ratio']} x, p95 {v['p95_batched_ms']} ms against "
            f"{v['p95_batch_1_ms']} ms: **{'met' if v['met'] else 'not met'}**.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the served checkpoint file")
    parser.add_argument("--photos", type=Path, required=True, help="cat.N.jpg and dog.N.jpg")
    parser.add_argument("--count", type=int, default=256, help="photos to use")
    parser.add_argument("--commit", help="the commit measured (the tree may travel without .git)")
    parser.add_argument("--seconds", type=float, default=15.0, help="each /predict run")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/catdog-gpu-logs"))
    parser.add_argument("--device", default="cuda", help="cpu: try the harness without a GPU")
    args = parser.parse_args(argv)

    datas = [p.read_bytes() for p in photos(args.count, folder=args.photos)]
    described = machine()
    if args.commit:
        described["commit"] = args.commit
    result: dict[str, Any] = {"date": date.today().isoformat(), "machine": described}
    result["device"] = gpu(args.device)
    name = "gpu-" + re.sub(
        r"[^a-z0-9]+", "-", result["device"]["gpu"].lower().replace("nvidia", "")
    ).strip("-")

    print("in one process:", flush=True)
    result["in_process"] = in_process(args.model, datas, args.device)
    write_results(name, result, markdown(result))
    print("through the stack:", flush=True)
    args.logs.mkdir(parents=True, exist_ok=True)
    result["stack"] = through_stack(args.model, datas, args.device, args.logs, args.seconds)
    result["verdict"] = verdict(result["stack"])
    write_results(name, result, markdown(result))
    print(json.dumps(result["verdict"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
