"""Resolve the configured model source to a loaded model, for workers and evaluation alike.

A source is either an MLflow registry URI (`models:/catdog@champion`, `models:/catdog/3`) or a
path to a checkpoint file. The registry's model holds our checkpoint as an artifact, so both
roads end in `common.ml.checkpoint.load_checkpoint` and never unpickle code.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from common.errors import ModelNotAvailableError
from common.ml.checkpoint import load_checkpoint
from common.ml.model import ModelConfig

log = logging.getLogger(__name__)

CHECKPOINT_ARTIFACT = "checkpoint.pt"


@dataclass
class LoadedModel:
    model: nn.Module
    config: ModelConfig
    name: str
    version: str
    source: str
    metadata: dict[str, Any]


def parse_registry_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/name@alias` -> (name, alias, None); `models:/name/3` -> (name, None, "3")."""
    if not uri.startswith("models:/"):
        raise ValueError(f"not a registry URI: {uri}")
    rest = uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, alias, None
    if "/" in rest:
        name, version = rest.split("/", 1)
        return name, None, version
    raise ValueError(f"registry URI needs @alias or /version: {uri}")


def resolve_registry_checkpoint(uri: str, tracking_uri: str) -> tuple[Path, str, str]:
    """Download the checkpoint behind a registry URI: (path, model name, version)."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    name, alias, version = parse_registry_uri(uri)
    try:
        # Pin the version first, so an alias moving mid-download cannot mix two versions.
        if alias is not None:
            version = client.get_model_version_by_alias(name, alias).version
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}"))
    except Exception as exc:
        raise ModelNotAvailableError(
            f"model {uri} is not available from {tracking_uri}: {exc}"
        ) from exc
    found = sorted(local.rglob(CHECKPOINT_ARTIFACT))
    if not found:
        raise ModelNotAvailableError(
            f"model {uri} version {version} holds no {CHECKPOINT_ARTIFACT}"
        )
    return found[0], name, str(version)


def load_model(uri: str, tracking_uri: str, device: str = "cpu") -> LoadedModel:
    """Load the model named by `uri` (registry URI or checkpoint path) onto `device`."""
    if uri.startswith("models:/"):
        path, name, version = resolve_registry_checkpoint(uri, tracking_uri)
    else:
        path, name, version = Path(uri), "", ""
    model, config, metadata = load_checkpoint(path, map_location=device)
    model.to(device)
    name = name or str(metadata.get("model_name", "catdog"))
    version = version or str(metadata.get("model_version", f"file:{path.name}"))
    log.info("model loaded", extra={"model_name": name, "model_version": version, "source": uri})
    return LoadedModel(model, config, name, version, uri, metadata)
