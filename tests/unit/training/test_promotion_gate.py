"""The champion alias moves only to a model whose test F1 beats the champion's."""

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from common.ml.checkpoint import save_checkpoint
from common.ml.model import ModelConfig, build_model
from training import registry
from training.params import Params, RegisterParams


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CATDOG_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)  # the default artifact root is relative to the working dir
    config = ModelConfig(arch="simple_cnn", image_size=32, resize_size=32)
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, build_model(config), config)
    return checkpoint


def _submit(checkpoint: Path, test_f1: float, margin: float = 0.0) -> registry.PromotionDecision:
    params = Params(register=RegisterParams(min_f1_improvement=margin))
    example = np.zeros((1, 3, 32, 32), dtype=np.float32)
    output = np.array([[0.5, 0.5]], dtype=np.float32)
    with registry.resume_run(checkpoint.with_name("no-run.json")):
        return registry.register_and_promote(checkpoint, test_f1, params, example, output)


def _champion() -> str | None:
    return registry.current_champion("catdog", "champion")


@pytest.mark.slow
def test_worse_model_does_not_take_the_alias_and_better_one_does(tracking: Path) -> None:
    first = _submit(tracking, 0.90)
    assert first.promoted and _champion() == first.version == "1"

    worse = _submit(tracking, 0.85)
    assert not worse.promoted
    assert _champion() == "1"
    assert "stays" in worse.reason

    better = _submit(tracking, 0.95)
    assert better.promoted and _champion() == "3"

    tags = MlflowClient().get_model_version("catdog", "2").tags
    assert tags["test_f1"] == "0.850000"
    assert "does not beat" in tags["promotion"]


@pytest.mark.slow
def test_promotion_margin_keeps_a_marginally_better_model_out(tracking: Path) -> None:
    _submit(tracking, 0.90)

    marginal = _submit(tracking, 0.92, margin=0.05)

    assert not marginal.promoted
    assert _champion() == "1"


@pytest.mark.slow
def test_registered_model_serves_through_the_registry_uri(tracking: Path) -> None:
    from common.ml.loading import load_model
    from common.settings import get_settings

    _submit(tracking, 0.90)

    loaded = load_model("models:/catdog@champion", get_settings().mlflow_tracking_uri)

    assert (loaded.name, loaded.version) == ("catdog", "1")
    assert loaded.config.arch == "simple_cnn"
