"""deploy/smoke-test.sh against the real local stack (redis-server, a Celery worker, uvicorn):
it passes when the model answers right, and fails, naming the wrong answer, when the model
answers wrongly. The script is the one CI runs against the VM after every deploy.

Both stacks serve a small CNN trained here on real photos, the two smoke photos among them;
the wrong model is the same network trained with the labels swapped (tests/smoke_model.py).
"""

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import smoke_photos
from tests.integration.processes import SHARED_DATA, start_stack
from tests.smoke_model import train_smoke_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE = smoke_photos(Path(tempfile.mkdtemp(prefix="smoke-photos-")))
PETIMAGES = SHARED_DATA / "petimages-180"


def train_checkpoint(path: Path, *, swap_labels: bool, version: str) -> Path:
    if not PETIMAGES.is_dir():
        pytest.skip(f"the shared photos are not at {PETIMAGES}")
    return train_smoke_model(path, SMOKE, swap_labels=swap_labels, version=version)


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
