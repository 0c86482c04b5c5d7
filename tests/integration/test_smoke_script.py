"""deploy/smoke-test.sh against the real local stack (redis-server, a Celery worker, uvicorn):
it passes when the model answers right, and fails, naming the wrong answer, when the model
answers wrongly. The script is the one CI runs against the VM after every deploy.

Both stacks serve a small CNN trained here on real photos, the two smoke photos among them;
the wrong model is the same network trained with the labels swapped. Training runs in eval
mode, so BatchNorm behaves in training exactly as it does when the worker serves it.
"""

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from common.imaging import decode_image
from common.labels import label_index
from common.ml.checkpoint import save_checkpoint
from common.ml.model import ModelConfig, build_model
from common.ml.preprocessing import preprocess_batch
from tests.images import smoke_photos
from tests.integration.processes import SHARED_DATA, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE = smoke_photos(Path(tempfile.mkdtemp(prefix="smoke-photos-")))
PETIMAGES = SHARED_DATA / "petimages-180"


def training_photos() -> list[tuple[Path, str]]:
    """The two smoke photos and four other real ones, with their labels."""
    photos = [(SMOKE / "cat.jpg", "cat"), (SMOKE / "dog.jpg", "dog")]
    for folder, label in (("Cat", "cat"), ("Dog", "dog")):
        photos += [(PETIMAGES / folder / f"{i}.jpg", label) for i in (10, 11)]
    return photos


def train_checkpoint(path: Path, *, swap_labels: bool, version: str) -> Path:
    if not PETIMAGES.is_dir():
        pytest.skip(f"the shared photos are not at {PETIMAGES}")
    torch.manual_seed(0)
    # 32 px keeps this to a few CPU seconds; the serving path is the same at any size.
    config = ModelConfig(arch="simple_cnn", image_size=32, resize_size=32)
    model = build_model(config).eval()  # eval mode: BatchNorm uses the statistics it serves with
    photos = training_photos()
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
        assert (model(x[:2]).argmax(dim=1) == y[:2]).all(), "the fixture model did not fit"
    save_checkpoint(path, model, config, {"model_name": "catdog", "model_version": version})
    return path


def stack_url(tmp: Path, checkpoint: Path) -> Iterator[str]:
    stack = start_stack(tmp, str(checkpoint), workers=1)
    try:
        yield stack.url
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def live_stack_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway with a worker whose model answers the smoke photos right."""
    tmp = tmp_path_factory.mktemp("smoke-right")
    checkpoint = train_checkpoint(tmp / "right.pt", swap_labels=False, version="smoke-right")
    yield from stack_url(tmp / "stack", checkpoint)


@pytest.fixture(scope="module")
def wrong_model_stack_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same stack with a model that calls cats dogs and dogs cats."""
    tmp = tmp_path_factory.mktemp("smoke-wrong")
    checkpoint = train_checkpoint(tmp / "wrong.pt", swap_labels=True, version="smoke-wrong")
    yield from stack_url(tmp / "stack", checkpoint)


def run_smoke_test(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "smoke-test.sh"), url],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "SMOKE_READY_TIMEOUT_S": "60",
            "SMOKE_JOB_TIMEOUT_S": "60",
            "SMOKE_PHOTOS_DIR": str(SMOKE),
        },
        timeout=180,
    )


def test_smoke_script_passes_against_the_local_stack(live_stack_url: str) -> None:
    result = run_smoke_test(live_stack_url)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("GET /readyz 200", "cat.jpg -> cat", "dog.jpg -> dog", "corrupt.jpg -> 422"):
        assert check in result.stdout
    assert "succeeded: cat.jpg -> cat, dog.jpg -> dog" in result.stdout


def test_smoke_script_fails_against_a_stack_whose_model_answers_wrongly(
    wrong_model_stack_url: str,
) -> None:
    result = run_smoke_test(wrong_model_stack_url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL POST /predict cat.jpg -> dog, expected cat" in result.stderr
    assert "FAIL POST /predict dog.jpg -> cat, expected dog" in result.stderr
    assert "FAIL job" in result.stderr
    # What does not depend on the model still passes: the failure is the model's.
    assert "PASS POST /predict corrupt.jpg -> 422" in result.stdout
