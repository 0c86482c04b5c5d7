"""Where every benchmark's results go (bench/results/<date>-<name>.json and .md) and how a
results file names the machine it was measured on."""

import json
import re
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")


def write_results(
    name: str, result: dict[str, Any], markdown: str, *, keep_earlier: bool = False
) -> Path:
    """Write `result` as JSON and `markdown` beside it, print the markdown; returns the stem.

    A run of the same day and machine replaces the earlier one's files, unless
    `keep_earlier`: then this run takes the first free name of `<date>-<name>`,
    `<date>-<name>-2`, `-3`... (the serving harness: every run is a row of its history)."""
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{result['date']}-{name}"
    if keep_earlier:
        stem = free_stem(stem)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    print(markdown, end="")
    return stem


def free_stem(stem: Path) -> Path:
    """`stem`, or `stem-2`, `stem-3`...: the first with no JSON results file yet."""
    candidate, n = stem, 1
    while candidate.with_suffix(".json").exists():
        n += 1
        candidate = stem.with_name(f"{stem.name}-{n}")
    return candidate


def cpu_line(described: dict[str, Any]) -> str:
    """`AMD EPYC (family 23 model 1 stepping 2)`: the CPU as the results' headers name it."""
    cpu_id = described.get("cpu_id")
    return f"{described['cpu']} ({cpu_id})" if cpu_id else str(described["cpu"])


def machine_label(described: dict[str, Any]) -> str:
    """`2core-intel-6-207`: the cores, the CPU's vendor and, where known, its family and model.
    This project's VMs have been Intel and AMD machines of two cores, and two of one vendor
    ran the model 2.4 times apart: each generation's results keep files of their own."""
    vendor = re.sub(r"\(r\)|[^a-z]", "", described["cpu"].split()[0].lower()) or "cpu"
    label = f"{described['cores']}core-{vendor}"
    if known := re.match(r"family (\d+) model (\d+)", described.get("cpu_id") or ""):
        label += f"-{known[1]}-{known[2]}"
    return label
