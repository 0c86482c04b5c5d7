"""Where every benchmark's results go (bench/results/<date>-<name>.json and .md) and how a
results file names the machine it was measured on."""

import json
import re
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")


def write_results(name: str, result: dict[str, Any], markdown: str) -> Path:
    """Write `result` as JSON and `markdown` beside it, print the markdown; returns the stem."""
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{result['date']}-{name}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    print(markdown, end="")
    return stem


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
