"""Where every benchmark's results go: bench/results/<date>-<name>.json and .md."""

import json
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
