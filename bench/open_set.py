"""How well the "not a cat or dog" flag works: the share of non-pet images it catches and the
share of real cat and dog photos it wrongly flags, at the checkpoint's threshold.

    python bench/open_set.py                         # models/model.pt, the trained threshold
    python bench/open_set.py --checkpoint PATH --threshold 0.3

The non-pet set is assembled from what this machine can make or install, nothing downloaded
from the web:
- photos and pictures shipped inside PyPI packages: the 25 non-cat images of the
  scikit-image 0.26.0 wheel (`skimage/data`: an astronaut, coffee, a rocket, coins, a
  horse silhouette, a text page...; fetched with `pip download`, read from the wheel, never
  installed), scikit-learn's two sample photos and matplotlib's two sample pictures;
- images drawn here with Pillow and matplotlib: text banners ("ADOPTED!"), page-like
  screenshots, charts, noise, gradients and geometric drawings.

Real pets: the pipeline's test split (data/splits/test.csv) and all of
`../shared/data/kaggle-dogs-vs-cats`. Writes bench/results/<date>-open-set.json and .md.
"""

import argparse
import io
import platform
import random
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reporting import write_results  # noqa: E402

from common.imaging import ImageLimits, decode_image  # noqa: E402
from common.ml.checkpoint import load_checkpoint  # noqa: E402
from common.ml.open_set import classify, looks_like_a_pet  # noqa: E402
from common.ml.preprocessing import preprocess_batch  # noqa: E402

KAGGLE = ROOT.parent / "shared" / "data" / "kaggle-dogs-vs-cats" / "train"
SKIMAGE_WHEEL = "scikit-image==0.26.0"
SKIMAGE_CATS = {"chelsea.png"}  # the one cat in skimage/data stays out of a non-pet set
BANNER_WORDS = [
    "ADOPTED!",
    "SOLD OUT",
    "Open day Saturday",
    "No photo yet",
    "Coming soon",
    "Thank you!",
    "Donate today",
    "Lost & found",
    "Volunteer with us",
    "404",
]


def packaged_images() -> Iterator[tuple[str, str, Image.Image]]:
    """(category, name, image) for the pictures inside registry packages."""
    import matplotlib
    import sklearn

    sample = Path(matplotlib.get_data_path()) / "sample_data"
    for path in (sample / "grace_hopper.jpg", sample / "Minduka_Present_Blue_Pack.png"):
        yield "packaged picture", f"matplotlib/{path.name}", Image.open(path)
    for path in sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg")):
        yield "packaged picture", f"sklearn/{path.name}", Image.open(path)
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "-d",
                folder,
                SKIMAGE_WHEEL,
            ],
            check=True,
        )
        wheel = next(Path(folder).glob("scikit_image-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for name in sorted(archive.namelist()):
                file = name.rsplit("/", 1)[-1]
                if (
                    name.startswith("skimage/data/")
                    and name.count("/") == 2
                    and file.endswith((".png", ".jpg"))
                    and file not in SKIMAGE_CATS
                ):
                    image = Image.open(io.BytesIO(archive.read(name)))
                    image.load()
                    yield "packaged picture", f"skimage/{file}", image


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def banner(rng: random.Random, text: str) -> Image.Image:
    """A shelter-style text banner: bold words on a coloured field."""
    background = tuple(rng.randrange(256) for _ in range(3))
    foreground = tuple(255 - c for c in background)
    image = Image.new("RGB", (rng.choice([400, 600, 800]), rng.choice([200, 300, 400])), background)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(image)
    draw.text((20, image.height // 3), text, fill=foreground, font=_font(rng.randrange(36, 72)))  # type: ignore[arg-type]
    return image


def screenshot(rng: random.Random) -> Image.Image:
    """A page-like screenshot: a title bar, lines of text, buttons."""
    image = Image.new("RGB", (800, 600), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 800, 50), fill=(40, 60, 120))
    draw.text((15, 12), "Pet adoption - listings", fill="white", font=_font(24))
    y = 80
    while y < 520:
        words = " ".join(rng.choice(BANNER_WORDS) for _ in range(4))
        draw.text((30, y), words, fill=(30, 30, 30), font=_font(18))
        y += rng.randrange(28, 44)
    draw.rounded_rectangle((600, 540, 780, 585), 8, fill=(20, 130, 60))
    draw.text((625, 550), "Submit", fill="white", font=_font(20))
    return image


def chart(rng: random.Random, kind: str) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    xs = list(range(20))
    ys = [rng.gauss(0, 1) for _ in xs]
    {"line": ax.plot, "bar": ax.bar, "scatter": ax.scatter}[kind](xs, ys)
    ax.set_title(f"Adoptions per week ({kind})")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def noise(rng: random.Random) -> Image.Image:
    return Image.frombytes("RGB", (256, 256), rng.randbytes(256 * 256 * 3))


def gradient(rng: random.Random) -> Image.Image:
    a, b = (tuple(rng.randrange(256) for _ in range(3)) for _ in range(2))
    image = Image.new("RGB", (256, 256))
    image.putdata(
        [
            tuple(int(a[c] + (b[c] - a[c]) * x / 255) for c in range(3))  # type: ignore[misc]
            for _ in range(256)
            for x in range(256)
        ]
    )
    return image


def drawing(rng: random.Random) -> Image.Image:
    """Random geometric shapes on white, like clip art."""
    image = Image.new("RGB", (300, 300), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(3, 9)):
        box = sorted(rng.sample(range(300), 2)), sorted(rng.sample(range(300), 2))
        shape = (box[0][0], box[1][0], box[0][1], box[1][1])
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
            shape, fill=colour, outline="black"
        )  # type: ignore[arg-type]
    return image


def generated_images(seed: int = 0) -> Iterator[tuple[str, str, Image.Image]]:
    """(category, name, image) for 60 images drawn here, ten of each kind."""
    rng = random.Random(seed)
    for i, word in enumerate(BANNER_WORDS):
        yield "text banner", f"banner-{i}", banner(rng, word)
    for i in range(10):
        yield "screenshot", f"screenshot-{i}", screenshot(rng)
    for i in range(10):
        yield "chart", f"chart-{i}", chart(rng, ("line", "bar", "scatter")[i % 3])
    for i in range(10):
        yield "noise", f"noise-{i}", noise(rng)
    for i in range(10):
        yield "gradient", f"gradient-{i}", gradient(rng)
    for i in range(10):
        yield "drawing", f"drawing-{i}", drawing(rng)


def pet_photos() -> Iterator[tuple[str, str, Path]]:
    """(set, name, path) of real cat and dog photos."""
    test_split = ROOT / "data" / "splits" / "test.csv"
    if test_split.is_file():
        import csv

        with test_split.open() as handle:
            for row in csv.DictReader(handle):
                yield "test split", row["path"], ROOT / row["path"]
    for path in sorted(KAGGLE.glob("*.jpg")):
        yield "kaggle", path.name, path


class Scorer:
    def __init__(self, checkpoint: Path, threads: int) -> None:
        torch.set_num_threads(threads)
        self.model, self.config, _ = load_checkpoint(checkpoint)
        if getattr(self.model, "imagenet_head", None) is None:
            raise SystemExit(f"{checkpoint} keeps no ImageNet head: it has no open-set signal")
        self.limits = ImageLimits(max_bytes=1 << 30, max_pixels=1 << 31, min_side=1)

    @torch.inference_mode()
    def pet_probability(self, data: bytes) -> float:
        """The served pet probability of an uploaded file's bytes."""
        decoded = decode_image(data, self.limits).image
        _, pets = classify(self.model, preprocess_batch([decoded], self.config))
        assert pets is not None
        return float(pets[0])


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def summarise(
    scores: dict[str, list[float]], threshold: float, flagged_means: str
) -> list[dict[str, Any]]:
    rows = []
    for group, values in scores.items():
        flagged = sum(not looks_like_a_pet(v, threshold) for v in values)
        rows.append(
            {
                "group": group,
                "images": len(values),
                flagged_means: flagged,
                "share": round(flagged / max(len(values), 1), 4),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "model.pt")
    parser.add_argument("--threshold", type=float, help="default: the checkpoint's")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    scorer = Scorer(args.checkpoint, args.threads)
    threshold = args.threshold if args.threshold is not None else scorer.config.pet_threshold
    if threshold is None:
        raise SystemExit("the checkpoint has no pet threshold; pass --threshold")
    non_pets: dict[str, list[float]] = defaultdict(list)
    missed: list[str] = []
    for category, name, image in [*packaged_images(), *generated_images()]:
        p = scorer.pet_probability(png(image))
        non_pets[category].append(p)
        if looks_like_a_pet(p, threshold):
            missed.append(f"{name} (p_pet {p:.3f})")
    pets: dict[str, list[float]] = defaultdict(list)
    wrongly_flagged: list[str] = []
    for group, name, path in pet_photos():
        p = scorer.pet_probability(path.read_bytes())
        pets[group].append(p)
        if not looks_like_a_pet(p, threshold):
            wrongly_flagged.append(f"{name} (p_pet {p:.3f})")
    all_non_pets = [p for values in non_pets.values() for p in values]
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": {"cpu": platform.processor() or platform.machine(), "node": platform.node()},
        "checkpoint": str(args.checkpoint),
        "arch": scorer.config.arch,
        "threshold": threshold,
        "non_pets": summarise(non_pets, threshold, "caught"),
        "non_pets_caught_share": round(
            sum(not looks_like_a_pet(p, threshold) for p in all_non_pets) / len(all_non_pets), 4
        ),
        "pets": summarise(pets, threshold, "wrongly_flagged"),
        "missed_non_pets": missed,
        "wrongly_flagged_pets": wrongly_flagged,
    }
    lines = [
        f"Open-set flag, {scorer.config.arch}, threshold {threshold:.4f} "
        f"(`python bench/open_set.py`, {result['date']})",
        "",
        "| images | group | count | flagged | share flagged |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| non-pet | {r['group']} | {r['images']} | {r['caught']} | {r['share']:.1%} |"
        for r in result["non_pets"]
    ]
    lines += [
        f"| real pets | {r['group']} | {r['images']} | {r['wrongly_flagged']} | {r['share']:.1%} |"
        for r in result["pets"]
    ]
    write_results("open-set", result, "\n".join(lines) + "\n")
    print(f"non-pets caught: {result['non_pets_caught_share']:.1%}; missed: {missed}")


if __name__ == "__main__":
    main()
