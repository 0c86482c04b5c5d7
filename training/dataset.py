"""Split manifests read into a torch Dataset that decodes images exactly as serving does."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from common.imaging import ImageLimits, decode_image
from common.labels import label_index
from training.artifacts import SPLITS_DIR
from training.manifest import read_csv

# Files were validated already; generous limits so no validated file is refused here.
_LIMITS = ImageLimits(max_bytes=1 << 30, max_pixels=1 << 31, min_side=1)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    sha256: str


def read_split(name: str, splits_dir: Path = SPLITS_DIR) -> list[Sample]:
    """Rows of `data/splits/<name>.csv` (columns path, label, sha256)."""
    return [
        Sample(Path(row["path"]), label_index(row["label"]), row["sha256"])
        for row in read_csv(splits_dir / f"{name}.csv")
    ]


def load_image(path: Path) -> Image.Image:
    """Decode a file through the serving path (EXIF orientation, RGB conversion)."""
    return decode_image(path.read_bytes(), _LIMITS).image


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, samples: list[Sample], transform: Callable[[Image.Image], torch.Tensor]):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        return self.transform(load_image(sample.path)), sample.label
