"""The manifest of a prepared dataset: one row per written slice, as JSON and CSV.

``manifest.json`` holds the source spec, the counts (slices, skipped background slices,
bad files) and the rows; ``manifest.csv`` is the same rows for spreadsheets.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

FORMAT = "metasrgan-slices/1"
COLUMNS = ("file", "split", "source", "axis", "index", "top", "left", "height", "width")


def write_manifest(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    from metasrgan.checkpoint import atomic_write

    doc = {"format": FORMAT, **meta, "slices": rows}
    text = json.dumps(doc, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    atomic_write(out / "manifest.csv", lambda tmp: Path(tmp).write_text(buf.getvalue()))
    atomic_write(out / "manifest.json", lambda tmp: Path(tmp).write_text(text))
    return out / "manifest.json"


def read_manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{root}: no manifest.json (write one with `metasrgan data prepare`)"
        )
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: not a metasrgan slice manifest (format {found!r})")
    if not isinstance(doc.get("slices"), list):
        raise ValueError(f"{path}: 'slices' must be a list of rows")
    for number, row in enumerate(doc["slices"], start=1):
        _check_row(path, number, row)
    return doc


def _check_row(path: Path, number: int, row: Any) -> None:
    """A row names a file inside the dataset folder: never an absolute path or ``..``."""
    file = row.get("file") if isinstance(row, dict) else None
    if not isinstance(file, str) or not file:
        raise ValueError(f"{path}: slice {number} has no 'file'")
    parts = Path(file).parts
    if Path(file).is_absolute() or ".." in parts or "\\" in file:
        raise ValueError(
            f"{path}: slice {number} points outside the dataset folder ({file!r}); the "
            "manifest's files are relative paths inside it"
        )
