"""The MLflow pyfunc wrapper, logged as "model from code" so no Python object is pickled.

The logged model holds our checkpoint as an artifact. `mlflow.pyfunc.load_model()` users
pass a float32 batch already preprocessed by common.ml.preprocessing (B, 3, S, S) and get class
probabilities (B, 2) back, at the checkpoint's temperature as everywhere else; the workers skip
this wrapper and load the checkpoint directly.
"""

from pathlib import Path
from typing import Any

import mlflow
import numpy as np


class CatDogModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def load_context(self, context: Any) -> None:
        from common.ml.checkpoint import load_checkpoint

        self.model, self.config, _ = load_checkpoint(Path(context.artifacts["checkpoint"]))

    # No type hints on predict: MLflow would try to infer a signature from them; ours is explicit.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        import torch

        from common.ml.calibration import calibrated_probabilities

        with torch.no_grad():
            batch = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
            logits = self.model(batch)
            return calibrated_probabilities(logits, self.config.temperature).numpy()


mlflow.models.set_model(CatDogModel())
