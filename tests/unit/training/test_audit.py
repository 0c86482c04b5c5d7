"""The label audit finds photos whose label disagrees with what the other photos teach, and
photos below the pet threshold, worst first; it writes a contact sheet a person can review."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.audit import find_suspects, write_contact_sheet

FLIPPED = [3, 57, 120]  # dogs filed as cats and cats filed as dogs
JUNK = 77


def _saved(tmp_path: Path) -> dict[str, object]:
    """200 'photos': two well-separated feature clusters, three labels flipped."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * 100 + [1] * 100)
    centres = np.where(labels[:, None] == 0, -1.0, 1.0)
    features = centres + 0.4 * rng.standard_normal((200, 16))
    given = labels.copy()
    given[FLIPPED] = 1 - given[FLIPPED]
    paths = []
    for i in range(200):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8), (i, 0, 0)).save(path)
        paths.append(str(path))
    return {
        "features": torch.tensor(features, dtype=torch.float32),
        "labels": torch.tensor(given),
        "paths": paths,
        "sha256": [f"{i:064x}" for i in range(200)],
    }


def test_flipped_labels_and_junk_are_the_suspects_worst_first(tmp_path: Path) -> None:
    saved = _saved(tmp_path)
    pets = np.full(200, 0.8)
    pets[JUNK] = 0.01
    suspects = find_suspects(saved, pets, pet_threshold=0.1)

    found = {int(Path(s.path).stem): s for s in suspects}
    assert set(FLIPPED) <= set(found) and JUNK in found
    assert len(found) <= 8, "a clean photo among many suspects would waste the reviewer's time"
    for i in FLIPPED:
        assert "label" in found[i].issue and found[i].suggested != found[i].label
        assert found[i].p_label < 0.5
    assert "not a pet" in found[JUNK].issue
    severities = [s.severity for s in suspects]
    assert severities == sorted(severities)


def test_the_contact_sheet_is_an_image_of_the_suspects(tmp_path: Path) -> None:
    saved = _saved(tmp_path)
    suspects = find_suspects(saved, None, None)
    sheet = tmp_path / "sheet.png"
    write_contact_sheet(suspects, sheet)
    with Image.open(sheet) as image:
        assert image.width > 400 and image.height > 100
