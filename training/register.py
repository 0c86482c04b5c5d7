"""Register stage: log the evaluated model to MLflow, register it as a new `catdog` version,
and point the `champion` alias at it only when its test F1 beats the current champion's.

Writes metrics/promotion.json: the decision and the reason, for people and for `make up`.
"""

import json
import logging
from dataclasses import asdict

import torch

from common.logging_setup import configure_logging
from common.ml.calibration import calibrated_probabilities
from common.ml.checkpoint import load_checkpoint
from common.ml.preprocessing import preprocess_batch
from training import registry
from training.artifacts import CHECKPOINT, EVAL_METRICS, PROMOTION_FILE, RUN_FILE
from training.dataset import load_image, read_split
from training.params import load_params

log = logging.getLogger(__name__)


def main() -> None:
    configure_logging(json_logs=False)
    params = load_params()
    test_f1 = json.loads(EVAL_METRICS.read_text())["f1_macro"]
    model, config, _ = load_checkpoint(CHECKPOINT)
    # A real test photo as the signature's input example: (1, 3, S, S) float32.
    example = preprocess_batch([load_image(read_split("test")[0].path)], config)
    with torch.no_grad():
        output = calibrated_probabilities(model(example), config.temperature)
    with registry.resume_run(RUN_FILE):
        decision = registry.register_and_promote(
            CHECKPOINT, test_f1, params, example.numpy(), output.numpy()
        )
    PROMOTION_FILE.parent.mkdir(parents=True, exist_ok=True)
    PROMOTION_FILE.write_text(json.dumps(asdict(decision), indent=2) + "\n")
    log.info("%s v%s: %s", decision.model_name, decision.version, decision.reason)


if __name__ == "__main__":
    main()
