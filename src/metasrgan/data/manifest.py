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
    if doc.get("format") != FORMAT or not isinstance(doc.get("slices"), list):
        raise ValueError(f"{path}: not a metasrgan slice manifest (format {doc.get('format')!r})")
    return doc
