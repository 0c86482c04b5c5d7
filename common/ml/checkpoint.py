"""Checkpoint files: weights plus everything needed to rebuild and describe the model.

Loading uses `torch.load(weights_only=True)`: a checkpoint can never run code.
"""

from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.errors import ModelNotAvailableError
from common.ml.model import ModelConfig, build_model

FORMAT_VERSION = 1


def save_checkpoint(
    path: Path, model: nn.Module, config: ModelConfig, metadata: dict[str, Any] | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "metadata": metadata or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint behind


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelConfig, dict[str, Any]]:
    """Rebuild the model in eval mode from `path`; raise ModelNotAvailableError when unusable."""
    if not path.is_file():
        raise ModelNotAvailableError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
        config = ModelConfig.from_dict(payload["config"])
        model = build_model(config)
        model.load_state_dict(payload["state_dict"])
    except ModelNotAvailableError:
        raise
    except Exception as exc:
        raise ModelNotAvailableError(f"checkpoint {path} could not be loaded: {exc}") from exc
    model.eval()
    return model, config, dict(payload.get("metadata", {}))
