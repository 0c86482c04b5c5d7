"""The in-process ceiling: what this machine can do with the served model and no service.

Loads the model exactly as a worker does (`common.ml.loading.load_model` on the settings'
`model_uri`), then times, on photos of ../shared/data/kaggle-dogs-vs-cats:
- decode + preprocess alone (`decode_image` + the engine's `prepare`), one thread;
- the forward pass alone on prepared tensors, by batch size;
- decode + preprocess + forward, by batch size (what a worker does per batch).

With `--together`, one batch size for a fixed wall-clock window that starts when a line
arrives on stdin (after "ready" on stdout): the harness starts two such processes and sends
both the line at once, so each is timed only while the other runs too. Timed over their own
photo lists instead, the two windows coincided only as far as the two model loads did, and
a process that runs alone on these 2-vCPU VMs runs faster. Measured on 2026-12-03 at batch 4,
alternating, the two ways gave 87-94 img/s (old) and 86-104 (together): the VM's drift hides
any difference, so this buys a defined measurement, not a different figure.

    python bench/ceiling.py --threads 2 --photos 192            # one process, a table
    python bench/ceiling.py --threads 1 --batch 4 --json        # one line of JSON (the harness)
    python bench/ceiling.py --threads 1 --batch 1 --idle-ms 8   # each photo after 8 ms idle
    python bench/ceiling.py --threads 1 --batch 4 --together --json   # ready, waits for a line
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KAGGLE = ROOT.parent / "shared" / "data" / "kaggle-dogs-vs-cats" / "train"
BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def photos(count: int, offset: int = 0, folder: Path = KAGGLE) -> list[Path]:
    """`count` Kaggle photos (`cat.N.jpg`, `dog.N.jpg` in `folder`), cats and dogs
    alternating, starting at `offset` of each."""
    cats = sorted(folder.glob("cat.*.jpg"), key=lambda p: int(p.stem.split(".")[1]))
    dogs = sorted(folder.glob("dog.*.jpg"), key=lambda p: int(p.stem.split(".")[1]))
    paired = [p for pair in zip(cats[offset:], dogs[offset:], strict=False) for p in pair]
    if len(paired) < count:
        raise SystemExit(f"only {len(paired)} photos in {folder}; asked for {count}")
    return paired[:count]


def load_engine(threads: int, batch_size: int = 32) -> Any:
    import torch

    from common.ml.loading import load_model
    from common.settings import get_settings
    from worker.engine import InferenceEngine

    torch.set_num_threads(threads)
    settings = get_settings()
    loaded = load_model(settings.model_uri, settings.mlflow_tracking_uri, "cpu")
    # The workers' runtime (CATDOG_INFERENCE_RUNTIME): the ceiling of what they run.
    engine = InferenceEngine(loaded, "cpu", batch_size, runtime=settings.inference_runtime)
    engine.warm_up(largest=1)  # each timed batch shape is first run once, untimed
    return engine


def rate(count: int, seconds: float) -> dict[str, float]:
    return {
        "images_per_s": round(count / seconds, 2),
        "ms_per_image": round(1000 * seconds / count, 3),
    }


def full_pass(engine: Any, datas: list[bytes]) -> None:
    """Decode + preprocess + one forward pass of `datas`: what a worker does per batch."""
    from common.imaging import decode_image

    engine.predict_prepared([engine.prepare(decode_image(data).image) for data in datas])


def measure(
    engine: Any, datas: list[bytes], batch_sizes: tuple[int, ...], idle_s: float = 0.0
) -> dict[str, Any]:
    """`idle_s`: a sleep before each batch of the decode + preprocess + forward timing, left
    out of the time (what a worker does between lone requests: wait for the next one)."""
    from common.imaging import decode_image

    started = time.perf_counter()
    prepared = [engine.prepare(decode_image(data).image) for data in datas]
    preprocess = rate(len(datas), time.perf_counter() - started)

    forward: dict[str, Any] = {}
    full: dict[str, Any] = {}
    for size in batch_sizes:
        engine.predict_prepared(prepared[:size])  # this batch shape, once, untimed
        started = time.perf_counter()
        for start in range(0, len(prepared), size):
            engine.predict_prepared(prepared[start : start + size])
        forward[str(size)] = rate(len(prepared), time.perf_counter() - started)

        elapsed = 0.0
        for start in range(0, len(datas), size):
            chunk = datas[start : start + size]
            if idle_s:
                time.sleep(idle_s)
            started = time.perf_counter()
            full_pass(engine, chunk)
            elapsed += time.perf_counter() - started
        full[str(size)] = {
            **rate(len(datas), elapsed),
            "batch_ms": round(1000 * elapsed * size / len(datas), 2),
        }
    return {"preprocess": preprocess, "forward": forward, "full": full}


def window(engine: Any, datas: list[bytes], size: int, seconds: float) -> dict[str, float]:
    """Decode + preprocess + forward in batches of `size`, round the photos again and again,
    until `seconds` have passed (at least one batch): a rate over a wall-clock window that
    another process can share (`--together`)."""
    done = 0
    started = time.perf_counter()
    while True:
        full_pass(engine, [datas[(done + i) % len(datas)] for i in range(size)])
        done += size
        if (elapsed := time.perf_counter() - started) >= seconds:
            return rate(done, elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--photos", type=int, default=192)
    parser.add_argument("--offset", type=int, default=0, help="first photo of each class")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (repeatable)")
    parser.add_argument(
        "--idle-ms", type=float, default=0.0, help="sleep before each timed batch (untimed)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--together", action="store_true", help="one --batch, timed from a line on stdin"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="the --together window")
    args = parser.parse_args(argv)
    engine = load_engine(args.threads)
    datas = [p.read_bytes() for p in photos(args.photos, args.offset)]
    if args.together:
        return together(engine, datas, args)
    result = {
        "threads": args.threads,
        "photos": len(datas),
        "model": f"{engine.model.name} v{engine.model.version}",
        "arch": engine.loaded.config.arch,
        "runtime": engine.runtime,
        "image_size": engine.loaded.config.image_size,
        "idle_ms": args.idle_ms,
        **measure(engine, datas, tuple(args.batch or BATCH_SIZES), args.idle_ms / 1000),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['model']} ({result['arch']}), {args.threads} thread(s), {len(datas)} photos")
    print(f"decode + preprocess alone: {result['preprocess']['images_per_s']} img/s")
    print("batch  forward img/s  full img/s  full ms/batch")
    for size in result["full"]:
        f, g = result["forward"][size], result["full"][size]
        print(f"{size:>5}  {f['images_per_s']:>13}  {g['images_per_s']:>10}  {g['batch_ms']:>13}")
    return 0


def together(engine: Any, datas: list[bytes], args: argparse.Namespace) -> int:
    if not args.batch or len(args.batch) != 1:
        raise SystemExit("--together takes exactly one --batch")
    size = args.batch[0]
    window(engine, datas, size, 0)  # this batch shape, once, untimed
    print("ready", flush=True)
    sys.stdin.readline()
    result = {"threads": args.threads, "batch": size, **window(engine, datas, size, args.seconds)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
