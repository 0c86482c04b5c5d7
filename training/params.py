"""`params.yaml` read into typed objects. Stages take these, never the raw dict."""

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

PARAMS_FILE = Path("params.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Strict):
    source: str = "kaggle"
    kaggle_handle: str = "shaunthesheep/microsoft-catsvsdogs-dataset"
    max_per_class: int = Field(default=0, ge=0)


class ValidateParams(_Strict):
    min_side: int = Field(default=32, gt=0)
    max_pixels: int = Field(default=50_000_000, gt=0)
    max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)


class SplitParams(_Strict):
    seed: int = 42
    train: float = Field(default=0.8, gt=0, lt=1)
    val: float = Field(default=0.1, gt=0, lt=1)


class ModelParams(_Strict):
    arch: str = "efficientnet_lite0"
    pretrained: bool = True
    # None: the arch's native input size (common.ml.model.native_input_size); resize_size
    # None: the image size (the whole short side is kept, no crop margin).
    image_size: int | None = Field(default=None, ge=32)
    resize_size: int | None = Field(default=None, ge=32)
    dropout: float = Field(default=0.2, ge=0, lt=1)


class AugmentationConfig(_Strict):
    random_resized_crop_scale: tuple[float, float] = (0.6, 1.0)
    horizontal_flip: float = Field(default=0.5, ge=0, le=1)
    rotation_degrees: float = Field(default=15.0, ge=0)
    color_jitter: float = Field(default=0.2, ge=0)


class TrainParams(_Strict):
    seed: int = 42
    batch_size: int = Field(default=64, gt=0)
    inference_batch_size: int = Field(default=4, gt=0)
    num_workers: int = Field(default=2, ge=0)
    optimizer: str = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    schedule: str = "cosine"
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    early_stopping_patience: int = Field(default=5, gt=0)
    head_epochs: int = Field(default=40, ge=0)
    feature_views: int = Field(default=2, ge=1)
    finetune_epochs: int = Field(default=0, ge=0)
    finetune_lr: float = Field(default=1e-4, gt=0)
    unfreeze_blocks: int = Field(default=2, ge=0)
    epochs: int = Field(default=10, ge=1)
    pet_flag_rate: float = Field(default=0.01, ge=0, lt=1)
    augmentation: AugmentationConfig = AugmentationConfig()


class RegisterParams(_Strict):
    model_name: str = "catdog"
    alias: str = "champion"
    min_f1_improvement: float = 0.0


class Params(_Strict):
    data: DataParams = DataParams()
    validate_: ValidateParams = Field(default=ValidateParams(), alias="validate")
    split: SplitParams = SplitParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    register_: RegisterParams = Field(default=RegisterParams(), alias="register")


def load_params(path: Path = PARAMS_FILE) -> Params:
    raw: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    return Params.model_validate(raw)


def set_param(dotted_key: str, value: str, path: Path = PARAMS_FILE) -> None:
    """Set one parameter in params.yaml, keeping its comments and layout, and validate the
    result. `make up DATA=PATH` uses this rather than `dvc exp run -S`, which needs a git
    identity and detaches HEAD while it runs."""
    from ruamel.yaml import YAML

    yaml_rt = YAML()
    document = yaml_rt.load(path.read_text())
    *parents, leaf = dotted_key.split(".")
    node = document
    for key in parents:
        node = node[key]
    if leaf not in node:
        raise KeyError(f"{dotted_key} is not a parameter in {path}")
    node[leaf] = yaml.safe_load(value) if value.strip() else value
    with path.open("w") as handle:
        yaml_rt.dump(document, handle)
    load_params(path)  # fail now, not in the middle of a pipeline run


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "set":
        sys.exit("usage: python -m training.params set DOTTED.KEY VALUE")
    set_param(sys.argv[2], sys.argv[3])
