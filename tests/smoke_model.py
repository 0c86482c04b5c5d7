"""A tiny CNN trained in seconds to answer the two smoke photos right (or, with the labels
swapped, wrong): the model behind deploy/smoke-test.sh in tests/integration/test_smoke_script.py
and in the container harness (tests/containers/models.py). Training runs in eval mode, so
BatchNorm behaves in training exactly as it does when a worker serves it."""

from pathlib import Path

import torch
import torch.nn.functional as F

from common.imaging import decode_image
from common.labels import label_index
from common.ml.checkpoint import save_checkpoint
from common.ml.model import ModelConfig, build_model
from common.ml.preprocessing import preprocess_batch
from tests.conftest import PETIMAGES


def training_photos(smoke_dir: Path) -> list[tuple[Path, str]]:
    """The two smoke photos and four other real ones, with their labels."""
    photos = [(smoke_dir / "cat.jpg", "cat"), (smoke_dir / "dog.jpg", "dog")]
    for folder, label in (("Cat", "cat"), ("Dog", "dog")):
        photos += [(PETIMAGES / folder / f"{i}.jpg", label) for i in (10, 11)]
    return photos


def train_smoke_model(path: Path, smoke_dir: Path, *, swap_labels: bool, version: str) -> Path:
    """A checkpoint at `path` that labels the smoke photos right (or swapped)."""
    torch.manual_seed(0)
    # 32 px keeps this to a few CPU seconds; the serving path is the same at any size.
    config = ModelConfig(arch="simple_cnn", image_size=32, resize_size=32)
    model = build_model(config).eval()  # eval mode: BatchNorm uses the statistics it serves with
    photos = training_photos(smoke_dir)
    x = preprocess_batch([decode_image(p.read_bytes()).image for p, _ in photos], config)
    labels = [{"cat": "dog", "dog": "cat"}[lab] if swap_labels else lab for _, lab in photos]
    y = torch.tensor([label_index(lab) for lab in labels])  # (N,)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(200):
        logits = model(x)  # (N, 2)
        if bool((logits.argmax(dim=1) == y).all()):
            break
        loss = F.cross_entropy(logits, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        assert (model(x[:2]).argmax(dim=1) == y[:2]).all(), "the smoke model did not fit"
    save_checkpoint(path, model, config, {"model_name": "catdog", "model_version": version})
    return path
