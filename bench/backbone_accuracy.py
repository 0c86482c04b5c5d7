"""Which backbone to train: accuracy, calibration and training time of each EfficientNet-Lite
size, trained by the pipeline's own code on the pipeline's own splits.

    dvc repro split                                   # the splits of params.yaml's data.source
    python bench/backbone_accuracy.py                 # every Lite size, params.yaml otherwise
    python bench/backbone_accuracy.py --arch efficientnet_lite0 --arch efficientnet_lite1

For each arch this runs `training.train.train` (the train stage without MLflow: frozen
features, the head, the temperature and the pet threshold) and scores the result as the
evaluate stage does, on the test split and on all of `../shared/data/kaggle-dogs-vs-cats`.
Writes bench/results/<date>-backbone-accuracy.json and .md. CPU-heavy: run it alone.
"""

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # the splits name photos relative to the repository root

from reporting import write_results  # noqa: E402

from common import classification  # noqa: E402
from common.ml.calibration import scored_at  # noqa: E402
from common.ml.model import LITE_VARIANTS  # noqa: E402
from training.dataset import Sample, read_split  # noqa: E402
from training.evaluate import predict_logits  # noqa: E402
from training.params import load_params  # noqa: E402
from training.runtime import pick_device, use_all_cores  # noqa: E402
from training.sources import scan_source  # noqa: E402
from training.train import train  # noqa: E402

KAGGLE = ROOT.parent / "shared" / "data" / "kaggle-dogs-vs-cats" / "train"


def score(trained: Any, samples: list[Sample], batch_size: int) -> dict[str, float]:
    device = pick_device()
    logits, labels, _ = predict_logits(trained.model, trained.config, samples, device, batch_size)
    scored = scored_at(labels, logits, trained.config.temperature)
    metrics = classification.classification_metrics(scored)
    return {k: round(metrics[k], 4) for k in ("accuracy", "f1_macro", "roc_auc", "ece")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", action="append", choices=sorted(LITE_VARIANTS))
    args = parser.parse_args()
    use_all_cores()
    base = load_params()
    kaggle = [Sample(f.path, ["cat", "dog"].index(f.label), "") for f in scan_source(KAGGLE).files]
    rows = []
    for arch in args.arch or sorted(LITE_VARIANTS):
        params = base.model_copy(update={"model": base.model.model_copy(update={"arch": arch})})
        started = time.perf_counter()
        trained = train(params, pick_device())
        train_s = time.perf_counter() - started
        batch = params.train.inference_batch_size
        rows.append(
            {
                "arch": arch,
                "image_size": trained.config.image_size,
                "train_s": round(train_s),
                "test": score(trained, read_split("test"), batch),
                "kaggle": score(trained, kaggle, batch),
                "temperature": round(trained.config.temperature, 4),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    today = date.today().isoformat()
    result = {
        "date": today,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "data": base.data.source,
        "feature_views": base.train.feature_views,
        "rows": rows,
    }
    lines = [
        f"`python bench/backbone_accuracy.py` ({today}, {os.cpu_count()} cores, "
        f"feature_views {base.train.feature_views})",
        "",
        "| arch | input | train stage | test accuracy | test ECE | Kaggle accuracy |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['arch']} | {r['image_size']} | {r['train_s'] / 60:.1f} min | "
        f"{r['test']['accuracy']:.2%} | {r['test']['ece']:.4f} | {r['kaggle']['accuracy']:.2%} |"
        for r in rows
    ]
    write_results("backbone-accuracy", result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
