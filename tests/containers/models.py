"""The harness's models, registered in the container stack's MLflow the way the register
stage leaves them (a run with test metrics, the checkpoint as an artifact, a version):

    python -m tests.containers.models MLFLOW_URL SMOKE_DIR WORKDIR

Version 1 answers the smoke photos right and becomes the champion; version 2 is the same
network trained with the labels swapped, the model of the release whose smoke test fails.
Prints the two version numbers."""

import sys
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from common.ml.loading import CHECKPOINT_ARTIFACT
from tests.smoke_model import train_smoke_model

MODEL_NAME = "catdog"


def register(client: MlflowClient, checkpoint: Path, accuracy: float) -> str:
    with mlflow.start_run() as run:
        mlflow.log_metrics({"test_accuracy": accuracy, "test_f1_macro": accuracy})
        mlflow.log_artifact(str(checkpoint), artifact_path="model")
    source = f"{run.info.artifact_uri}/model"
    return str(client.create_model_version(MODEL_NAME, source, run_id=run.info.run_id).version)


def main(url: str, smoke_dir: Path, workdir: Path) -> None:
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("catdog-containers")
    client = MlflowClient(tracking_uri=url)
    client.create_registered_model(MODEL_NAME)
    versions = []
    for swap, accuracy in ((False, 1.0), (True, 0.0)):
        folder = workdir / ("swapped" if swap else "right")
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint = train_smoke_model(
            folder / CHECKPOINT_ARTIFACT, smoke_dir, swap_labels=swap, version=folder.name
        )
        versions.append(register(client, checkpoint, accuracy))
    client.set_registered_model_alias(MODEL_NAME, "champion", versions[0])
    print(*versions)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
