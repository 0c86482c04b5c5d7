"""Everything that talks to MLflow: runs, per-epoch metrics, the logged model, the registry
and the champion promotion gate. Stages call these functions; nothing else imports mlflow
(except common.ml.loading, which only reads the registry).

The tracking store defaults to a local SQLite file (CATDOG_MLFLOW_TRACKING_URI changes it).
"""

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Telemetry off before mlflow is imported anywhere in this process.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from common.ml.loading import CHECKPOINT_ARTIFACT
from common.settings import get_settings
from training.params import Params

log = logging.getLogger(__name__)

EXPERIMENT = "catdog"
PYFUNC_MODEL_CODE = Path(__file__).with_name("mlflow_pyfunc.py")


def _connect() -> MlflowClient:
    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    return MlflowClient()


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: value}


@contextmanager
def training_run(params: Params, lineage: dict[str, str]) -> Iterator[str]:
    """A new MLflow run holding every parameter, the data hashes and the git commit."""
    _connect()
    with mlflow.start_run(run_name=f"train-{params.model.arch}") as run:
        mlflow.log_params(_flatten("", params.model_dump(by_alias=True, mode="json")))
        mlflow.set_tags({**lineage, "stage": "train", "arch": params.model.arch})
        yield run.info.run_id


def log_epoch(row: dict[str, Any]) -> None:
    if mlflow.active_run() is None:
        return  # loops run outside a tracked run in unit tests
    metrics = {k: float(v) for k, v in row.items() if isinstance(v, int | float) and k != "epoch"}
    mlflow.log_metrics(metrics, step=int(row["epoch"]))


def log_training_outputs(history: Any, summary: dict[str, Any], files: list[Path]) -> None:
    mlflow.log_metrics(
        {f"final_{k}": float(v) for k, v in summary.items() if isinstance(v, int | float)}
    )
    for path in files:
        mlflow.log_artifact(str(path), artifact_path="train")


@contextmanager
def resume_run(run_file: Path) -> Iterator[str]:
    """Continue the training run named in `run_file`, or start a fresh one when this store has
    never seen it (for example after `dvc pull` on another machine)."""
    client = _connect()
    run_id = json.loads(run_file.read_text()).get("mlflow_run_id") if run_file.is_file() else None
    if run_id:
        try:
            client.get_run(run_id)
        except MlflowException:
            log.warning(
                "run %s is not in %s; starting a new run", run_id, mlflow.get_tracking_uri()
            )
            run_id = None
    with mlflow.start_run(run_id=run_id) as run:
        yield run.info.run_id


def log_evaluation(metrics: dict[str, float], files: list[Path], prefix: str = "test") -> None:
    mlflow.log_metrics({f"{prefix}_{k}": float(v) for k, v in metrics.items()})
    for path in files:
        mlflow.log_artifact(str(path), artifact_path="evaluation")


@dataclass
class PromotionDecision:
    model_name: str
    version: str
    test_f1: float
    champion_version: str | None
    champion_f1: float | None
    promoted: bool
    reason: str


def register_and_promote(
    checkpoint: Path, test_f1: float, params: Params, example: Any, output: Any
) -> PromotionDecision:
    """Log the model (checkpoint inside, signature attached), register it as a new version and
    move the alias only when its test F1 beats the champion's by more than the margin."""
    client = _connect()
    name, alias = params.register_.model_name, params.register_.alias
    with tempfile.TemporaryDirectory() as staging:
        # The artifact keeps its file name; workers look for exactly CHECKPOINT_ARTIFACT.
        staged = Path(staging) / CHECKPOINT_ARTIFACT
        shutil.copy(checkpoint, staged)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_MODEL_CODE),
            artifacts={"checkpoint": str(staged)},
            code_paths=[str(Path(__file__).resolve().parents[1] / "common")],
            signature=mlflow.models.infer_signature(example, output),
            input_example=example,
            pip_requirements=["torch==2.14.1", "torchvision==0.29.1", "pillow", "numpy"],
        )
    version = mlflow.register_model(info.model_uri, name).version
    decision = _decide(
        client, name, alias, str(version), test_f1, params.register_.min_f1_improvement
    )
    client.set_model_version_tag(name, str(version), "test_f1", f"{test_f1:.6f}")
    client.set_model_version_tag(name, str(version), "promotion", decision.reason)
    if decision.promoted:
        client.set_registered_model_alias(name, alias, str(version))
    mlflow.set_tags({"registered_version": str(version), "promoted": str(decision.promoted)})
    mlflow.log_dict(asdict(decision), "promotion.json")
    return decision


def _decide(
    client: MlflowClient, name: str, alias: str, version: str, test_f1: float, margin: float
) -> PromotionDecision:
    try:
        champion = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return PromotionDecision(
            name,
            version,
            test_f1,
            None,
            None,
            True,
            f"no {alias} yet: version {version} becomes {alias}",
        )
    champion_version = str(champion.version)
    champion_f1 = champion_test_f1(client, name, champion_version)
    promoted = champion_f1 is None or test_f1 > champion_f1 + margin
    verdict = "beats" if promoted else "does not beat"
    reason = (
        f"test F1 {test_f1:.4f} {verdict} {alias} v{champion_version} "
        f"(F1 {champion_f1}) by more than {margin}" + ("" if promoted else f"; {alias} stays")
    )
    return PromotionDecision(
        name, version, test_f1, champion_version, champion_f1, promoted, reason
    )


def champion_test_f1(client: MlflowClient, name: str, version: str) -> float | None:
    tags = client.get_model_version(name, version).tags
    return float(tags["test_f1"]) if "test_f1" in tags else None


def current_champion(name: str, alias: str) -> str | None:
    """The version the alias points at, or None when there is none yet."""
    client = _connect()
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
