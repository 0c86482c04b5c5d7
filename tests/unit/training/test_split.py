import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from training import ingest, split, validate
from training.manifest import MANIFEST_COLUMNS, read_csv, write_csv
from training.params import SplitParams
from training.split import SPLITS, assign_split, split_rows, unit_interval

PARAMS = SplitParams(seed=42, train=0.8, val=0.1)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _rows(count: int, label: str = "cat", start: int = 0) -> list[dict[str, str]]:
    return [
        {"path": f"data/raw/{label}/{i}.jpg", "label": label, "sha256": _sha(f"{label}{i}")}
        for i in range(start, start + count)
    ]


def _where(splits: dict[str, list[dict[str, str]]]) -> dict[str, str]:
    return {row["path"]: name for name, rows in splits.items() for row in rows}


def test_unit_interval_follows_the_documented_formula() -> None:
    content = _sha("photo")
    expected = int(hashlib.sha256(f"7:{content}".encode()).hexdigest()[:15], 16) / 16**15
    assert unit_interval(content, seed=7) == expected
    assert 0 <= expected < 1


def test_split_is_deterministic_for_a_seed() -> None:
    rows = _rows(300)
    assert split_rows(rows, PARAMS) == split_rows(list(reversed(rows)), PARAMS)


def test_a_different_seed_gives_a_different_assignment() -> None:
    rows = _rows(300)
    other = SplitParams(seed=43, train=0.8, val=0.1)
    first, second = _where(split_rows(rows, PARAMS)), _where(split_rows(rows, other))
    moved = sum(first[path] != second[path] for path in first)
    assert moved > 30  # about a third of images change split between independent seeds


def test_each_class_is_split_near_80_10_10() -> None:
    rows = _rows(2000, "cat") + _rows(2000, "dog")
    splits = split_rows(rows, PARAMS)
    for label in ("cat", "dog"):
        counts = Counter(
            name for name, members in splits.items() for r in members if r["label"] == label
        )
        fractions = {name: counts[name] / 2000 for name in SPLITS}
        assert fractions["train"] == pytest.approx(0.8, abs=0.03)
        assert fractions["val"] == pytest.approx(0.1, abs=0.02)
        assert fractions["test"] == pytest.approx(0.1, abs=0.02)


def test_real_duplicate_pair_never_straddles_splits(petimages: Path) -> None:
    pair = [petimages / "Cat/3411.jpg", petimages / "Cat/4435.jpg"]
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in pair]
    assert digests[0] == digests[1]
    for seed in range(20):
        params = SplitParams(seed=seed, train=0.8, val=0.1)
        assert len({assign_split(d, seed, params.train, params.val) for d in digests}) == 1
    rows = [
        {"path": p.name, "label": "cat", "sha256": d} for p, d in zip(pair, digests, strict=True)
    ]
    where = _where(split_rows([*rows, *_rows(200)], PARAMS))
    assert where["3411.jpg"] == where["4435.jpg"]


def test_copies_sharing_a_hash_always_share_a_split() -> None:
    rows = [
        {"path": f"data/raw/{label}/{i}-{copy}.jpg", "label": label, "sha256": _sha(str(i))}
        for i in range(200)
        for copy, label in enumerate(["cat", "cat", "dog"])
    ]
    where = _where(split_rows(rows, PARAMS))
    for i in range(200):
        assert len({where[r["path"]] for r in rows if r["sha256"] == _sha(str(i))}) == 1


def test_adding_images_never_moves_existing_ones() -> None:
    before = _where(split_rows(_rows(500), PARAMS))
    after = _where(split_rows(_rows(500) + _rows(500, start=500) + _rows(300, "dog"), PARAMS))
    assert {path: after[path] for path in before} == before


def test_split_rejects_fractions_that_leave_no_test_set() -> None:
    with pytest.raises(ValueError, match="must be below 1"):
        split_rows(_rows(10), SplitParams(seed=1, train=0.9, val=0.1))


def test_split_writes_sorted_csvs_and_a_summary(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    rows = [{**r, "width": 180, "height": 180, "format": "JPEG", "mode": "RGB"} for r in _rows(400)]
    write_csv(manifest, MANIFEST_COLUMNS, rows[::-1])
    summary = split.split(manifest, tmp_path / "splits", PARAMS)
    total = 0
    for name in SPLITS:
        written = read_csv(tmp_path / "splits" / f"{name}.csv")
        assert list(written[0]) == ["path", "label", "sha256"]
        assert [r["path"] for r in written] == sorted(r["path"] for r in written)
        assert summary["counts"][name]["total"] == summary["counts"][name]["cat"] == len(written)
        total += len(written)
    assert total == 400
    assert sum(summary["class_fractions"]["cat"].values()) == pytest.approx(1, abs=1e-3)
    assert json.loads((tmp_path / "splits/summary.json").read_text()) == summary


def test_split_output_is_byte_identical_when_run_twice(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    write_csv(manifest, MANIFEST_COLUMNS, _rows(200) + _rows(200, "dog"))
    split.split(manifest, tmp_path / "one", PARAMS)
    split.split(manifest, tmp_path / "two", PARAMS)
    for name in ["train.csv", "val.csv", "test.csv", "summary.json"]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_the_three_stage_mains_run_in_a_fresh_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, petimages: Path
) -> None:
    source = tmp_path / "photos"
    for label in ("Cat", "Dog"):
        for number in range(40):
            target = source / label / f"{number}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((petimages / label / f"{number}.jpg").read_bytes())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data:\n  source: photos\n  max_per_class: 30\n")
    for module in (ingest, validate, split):
        monkeypatch.setattr(module, "configure_logging", lambda *args: None)
        assert module.main() == 0
    counts = json.loads((tmp_path / "data/splits/summary.json").read_text())["counts"]
    assert sum(counts[name]["total"] for name in SPLITS) == 60
