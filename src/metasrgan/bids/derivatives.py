"""The BIDS derivatives dataset the app writes: names, ``dataset_description.json``, sidecars.

Outputs keep the raw file's entities and add ``desc-superres`` (and ``res-<mm>mm`` when a
voxel size was asked for), in the order the BIDS schema gives, e.g.
``sub-01/anat/sub-01_res-1mm_desc-superres_T1w.nii.gz``.  Sidecars carry the raw sidecar's
fields, ``Sources`` as BIDS URIs into the raw dataset (``bids:raw:sub-01/anat/...``), and a
``SuperResolution`` record (factors, model and its SHA-256, the settings).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

DESC = "superres"
BIDS_VERSION = "1.9.0"
"""The BIDS version the derivatives follow (BIDS URIs and DatasetLinks need 1.8+; the
newest one the bundled ``bids-validator`` knows)."""
RAW_LINK = "raw"
"""The ``DatasetLinks`` name of the raw dataset in ``Sources`` URIs."""


@lru_cache(maxsize=1)
def _schema():
    from bidsschematools import schema

    return schema.load_schema()


def entity_order() -> list[str]:
    """Entity keys (``sub``, ``ses``, ..., ``res``, ``den``, ``label``, ``desc``) in the
    order the BIDS schema puts them in file names."""
    s = _schema()
    return [s.objects.entities[e]["name"] for e in s.rules.entities]


def res_label(spacing: float) -> str:
    """``res-`` label of a target voxel size: ``1mm``, ``0p5mm`` (labels are alphanumeric)."""
    text = f"{float(spacing):g}".replace(".", "p")
    if not text.replace("p", "").isdigit():
        raise ValueError(f"--spacing {spacing}: no BIDS res- label for it")
    return f"{text}mm"


def split_name(name: str) -> tuple[list[tuple[str, str]], str, str]:
    """``sub-01_ses-1_T1w.nii.gz`` -> ([("sub", "01"), ("ses", "1")], "T1w", ".nii.gz")."""
    ext = ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix
    parts = name[: len(name) - len(ext)].split("_")
    pairs = [tuple(p.split("-", 1)) for p in parts[:-1]]
    if not parts[:-1] or any(len(p) != 2 for p in pairs):
        raise ValueError(f"{name}: not a BIDS file name (entities key-value_suffix.ext)")
    return [(k, v) for k, v in pairs], parts[-1], ext


def derivative_relpath(raw_relpath: str, spacing: float | None = None) -> str:
    """Where the output of a raw file goes inside the derivatives dataset."""
    folder, _, name = raw_relpath.rpartition("/")
    pairs, suffix, ext = split_name(name)
    entities = dict(pairs)
    entities["desc"] = entities["desc"] + DESC if "desc" in entities else DESC
    if spacing is not None:
        entities["res"] = res_label(spacing)
    order = {key: i for i, key in enumerate(entity_order())}
    keys = sorted(entities, key=lambda k: (order.get(k, len(order)), k))
    new = "_".join(f"{k}-{entities[k]}" for k in keys) + f"_{suffix}{ext}"
    return f"{folder}/{new}" if folder else new


def bids_uri(raw_relpath: str) -> str:
    """``bids:raw:sub-01/anat/sub-01_T1w.nii.gz``."""
    return f"bids:{RAW_LINK}:{raw_relpath}"


def raw_link(raw_root: Path, out_root: Path) -> str:
    """How the derivatives dataset points at the raw one: a relative path when the
    derivatives live inside it (``derivatives/metasrgan`` -> ``../..``), else a file URI."""
    raw_root, out_root = Path(raw_root).resolve(), Path(out_root).resolve()
    if out_root.is_relative_to(raw_root):
        return os.path.relpath(raw_root, out_root)
    return raw_root.as_uri()


def dataset_description(raw: dict[str, Any], model: dict, raw_root: Path, out_root: Path) -> dict:
    """``dataset_description.json`` of the derivatives dataset (no timestamps: every job of
    an array writes the same bytes)."""
    from metasrgan import __version__

    used = f"model {model.get('Name')}" + (
        f" ({model['File']}, SHA-256 {model['SHA256']})" if "SHA256" in model else " (untrained)"
    )
    link = raw_link(raw_root, out_root)
    return {
        "Name": f"metasrgan super-resolution of {raw.get('Name', Path(raw_root).name)}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "metasrgan",
                "Version": __version__,
                "Description": f"Meta-SRGAN arbitrary-scale super-resolution with {used}",
                "Model": model,
            }
        ],
        "SourceDatasets": [{"URL": link}],
        "DatasetLinks": {RAW_LINK: link},
    }


def readme(content: dict) -> str:
    """The derivatives dataset's README: what it holds and how it was made."""
    tool = content["GeneratedBy"][0]
    return (
        f"# {content['Name']}\n\n"
        f"Super-resolved scans written by {tool['Name']} {tool['Version']}: "
        f"{tool['Description']}.\n\n"
        "Each `*_desc-superres_*.nii.gz` has a JSON sidecar with the raw sidecar's fields, "
        "`Sources` (BIDS URIs into the raw dataset, `DatasetLinks.raw`) and a "
        "`SuperResolution` record: factors per voxel axis, grids before and after, the model "
        "file and its SHA-256.\n"
    )


def write_dataset_description(out_root: Path, content: dict) -> Path:
    """Write (atomically) the description; an existing one made by another model is an
    error, so that one derivatives dataset never mixes models."""
    from metasrgan.atomic import atomic_write

    path = Path(out_root) / "dataset_description.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        old_model = ((old.get("GeneratedBy") or [{}])[0] or {}).get("Model")
        if old_model and old_model != content["GeneratedBy"][0]["Model"]:
            raise ValueError(
                f"{path} was written with another model ({old_model.get('SHA256', 'untrained')}); "
                "use another output folder"
            )
    text = json.dumps(content, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    notes = readme(content)
    atomic_write(path.with_name("README.md"), lambda tmp: Path(tmp).write_text(notes))
    return path
