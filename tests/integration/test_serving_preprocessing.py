"""A photo reaches the served model as the tensor evaluation builds from the file on disk.

The bytes go through everything serving does (multipart upload, the gateway, Redis, the
worker's decode and preprocessing, a batch through the model); the reference is what
`training.evaluate` does with the same file (its dataset and the eval transform). The two
answers must agree to float rounding. A control proves the check can fail: the same photo one
grey level brighter moves the answer by far more than the tolerance.
"""

from pathlib import Path

import httpx
import pytest
import torch

from common.ml.checkpoint import load_checkpoint
from common.ml.preprocessing import eval_transform
from tests.integration.conftest import KAGGLE, PETIMAGES
from training.dataset import ImageDataset, Sample

pytestmark = pytest.mark.integration

PHOTOS = [KAGGLE / "cat.3.jpg", KAGGLE / "dog.5.jpg", PETIMAGES / "Cat" / "7.jpg"]
# Float rounding between two processes (thread counts change summation order).
TOLERANCE = 1e-6


def _evaluation_answers(checkpoint: Path, photos: list[Path], brighten: float = 0.0) -> list[float]:
    """P(dog) for each photo, from the tensors training.evaluate builds for them."""
    model, config, _ = load_checkpoint(checkpoint)
    dataset = ImageDataset([Sample(p, 0, "") for p in photos], eval_transform(config))
    std = torch.tensor(config.std)[:, None, None]
    answers = []
    with torch.inference_mode():
        for index in range(len(photos)):
            tensor, _ = dataset[index]  # (3, S, S)
            logits = model((tensor + brighten / std)[None])  # (1, 2)
            answers.append(torch.softmax(logits, dim=1)[0, config.classes.index("dog")].item())
    return answers


def test_uploaded_bytes_reach_the_model_as_the_tensor_evaluation_builds(
    client: httpx.Client, checkpoint: Path
) -> None:
    served = []
    for photo in PHOTOS:
        response = client.post("/predict", files={"file": (photo.name, photo.read_bytes())})
        assert response.status_code == 200, response.text
        served.append(response.json()["probabilities"]["dog"])
    evaluated = _evaluation_answers(checkpoint, PHOTOS)
    assert served == pytest.approx(evaluated, abs=TOLERANCE)

    one_grey_level_brighter = _evaluation_answers(checkpoint, PHOTOS, brighten=1 / 255)
    shifts = [abs(a - b) for a, b in zip(one_grey_level_brighter, evaluated, strict=True)]
    assert max(shifts) > 20 * TOLERANCE, "the model is too flat to tell the tensors apart"
