"""Results as CSV or JSON: one row per photo, errors in their own column."""

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from common.labels import CLASSES

COLUMNS = [
    "filename",
    "label",
    "probability",
    *[f"p_{c}" for c in CLASSES],
    "pet_detected",
    "model_version",
    "error",
]


def row(filename: str, result: dict[str, Any] | None, error: str | None = None) -> dict[str, Any]:
    """A flat record from a /predict answer or a job item."""
    result = result or {}
    item_error = result.get("error")
    if item_error and not error:
        error = f"{item_error['reason']}: {item_error['message']}"
    probabilities = result.get("probabilities") or {}
    return {
        "filename": filename,
        "label": result.get("label"),
        "probability": result.get("probability"),
        **{f"p_{c}": probabilities.get(c) for c in CLASSES},
        "pet_detected": result.get("pet_detected"),
        "model_version": (result.get("model") or {}).get("version"),
        "error": error,
    }


def render(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(list(rows), indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in rows:
        writer.writerow({k: csv_cell(v) for k, v in record.items()})
    return buffer.getvalue()


# A spreadsheet runs a cell that starts with one of these as a formula (`=HYPERLINK(...)`).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """`value` as a CSV cell a spreadsheet shows as text: text that would start a formula
    gets a leading `'` (OWASP's advice); quotes, commas and newlines are the csv module's."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
