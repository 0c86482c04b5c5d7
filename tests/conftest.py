"""Fixtures shared by every test: where the shared photos are, and settings isolation."""

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
PETIMAGES = SHARED_DATA / "petimages-180"
KAGGLE = SHARED_DATA / "kaggle-dogs-vs-cats" / "train"


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test reads settings anew, so monkeypatched CATDOG_ variables take effect."""
    from common.settings import get_settings

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def cat_photo() -> Path:
    return PETIMAGES / "Cat" / "1.jpg"


@pytest.fixture(scope="session")
def dog_photo() -> Path:
    return PETIMAGES / "Dog" / "1.jpg"
