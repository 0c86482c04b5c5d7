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


# The files that take longest (the DVC pipeline trains and registers; the resilience tests
# kill and restart processes): started first, so with two xdist workers handing out whole
# files in collection order, neither is left running alone at the end of the suite.
LONGEST_FIRST = (
    REPO_ROOT / "tests" / "pipeline" / "test_dvc_repro.py",
    REPO_ROOT / "tests" / "integration" / "test_serving_resilience.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = Path(item.path)
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: every other test keeps its order
