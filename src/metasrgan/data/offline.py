"""The real MRI that is available offline, and the slabs held out of training.

- MNI152 2009a T1 (1 mm), inside the ``nilearn`` wheel.
- Colin27 T1 (``ch2``, ``ch2bet`` 1 mm; ``ch2better`` 0.5 mm), Debian package ``mricron-data``.
- INIA19 rhesus macaque T1 (0.5 mm), also in ``mricron-data``: another species, never
  trained on; used to test generalisation.
"""

from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

MRICRON_TEMPLATES = Path("/usr/share/mricron/templates")
MNI152_MEMBER = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"

SOURCES: dict[str, str] = {
    "mni152": MNI152_MEMBER,
    "colin27": "ch2.nii.gz",
    "colin27-bet": "ch2bet.nii.gz",
    "colin27-05mm": "ch2better.nii.gz",
    "inia19": "inia19-t1-brain.nii.gz",
}


@dataclass(frozen=True)
class Slab:
    """Axial slices ``z0 <= z < z1`` of a source volume."""

    source: str
    z0: int
    z1: int
    dtype: str = "uint8"


GUARD = 4
"""Slices on each side of a held-out slab that training also skips (adjacent slices are
near-duplicates)."""

HELD_OUT_SLABS: dict[str, Slab] = {
    "mni152_val": Slab("mni152", 95, 107),
    "colin27_val": Slab("colin27", 85, 97),
}
"""Validation slabs: never trained on (with :data:`GUARD`).  ``colin27-bet`` shares
``colin27``'s grid, so the same range is held out of it; ``colin27-05mm`` is the same
subject at 0.5 mm in the same world space, so the same slab of the head (the guard
included) is held out of it, mapped onto its grid (:func:`excluded_z`)."""

UNSEEN_SLABS: dict[str, Slab] = {
    "inia19_macaque": Slab("inia19", 58, 70, "float32"),
}
"""Scans of a kind the model never trained on (another species)."""


TRAINING_SLABS: dict[str, Slab] = {
    "mni152_train": Slab("mni152", 60, 68),
}
"""Small bundled training data (quick runs and tests): axial slices that the offline split
itself would train on, far from every held-out slab and its guard (see
:func:`check_trainable`)."""


def check_trainable(slab: Slab) -> None:
    """Raise ValueError if ``slab`` overlaps a held-out slab of its source or its guard."""
    excluded = excluded_z(slab.source)
    if excluded is not None and slab.z0 < excluded[1] and excluded[0] < slab.z1:
        raise ValueError(
            f"{slab.source} slices {slab.z0}:{slab.z1} overlap the held-out range "
            f"{excluded[0]}:{excluded[1]} (validation slab and guard)"
        )


def excluded_z(source: str) -> tuple[int, int] | None:
    """The axial range (guard included) that training must skip for ``source``.

    ``colin27-05mm`` (``ch2better``: 0.5 mm, world z = 0.5 k - 69.5) holds the 1 mm range's
    voxels (world z = k - 71, each 1 mm thick) from the lower face of the first to the upper
    face of the last: 0.5 mm voxels ``2 z0 - 4`` to ``2 z1 - 4``, one more kept out above."""
    if source == "colin27-05mm":
        z0, z1 = excluded_z("colin27")
        return 2 * z0 - 4, 2 * z1 - 3
    base = "colin27" if source == "colin27-bet" else source
    for slab in HELD_OUT_SLABS.values():
        if slab.source == base:
            return (slab.z0 - GUARD, slab.z1 + GUARD)
    return None


def data_dir() -> Path:
    """Where fetched data are kept: ``$METASRGAN_DATA``, else ``$XDG_CACHE_HOME/metasrgan``
    (``~/.cache/metasrgan`` when it is unset or, as the XDG spec says, not absolute)."""
    if os.environ.get("METASRGAN_DATA"):
        return Path(os.environ["METASRGAN_DATA"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "metasrgan"


def _site_packages() -> list[Path]:
    return [Path(p) for p in sys.path if p.endswith("site-packages")]


def locate(source: str, search: list[Path] | None = None) -> Path:
    """Path of an offline source file; raises FileNotFoundError saying how to get it."""
    if source not in SOURCES:
        raise KeyError(f"unknown offline source {source!r}; known: {', '.join(SOURCES)}")
    name = SOURCES[source]
    cache = data_dir()
    if source == "mni152":
        candidates = [sp / name for sp in _site_packages()] + [cache / Path(name).name]
        for c in candidates:
            if c.is_file():
                return c
        raise FileNotFoundError(
            "MNI152 template not found: `pip install nilearn`, or run "
            "`metasrgan data fetch` to extract it from the nilearn wheel into " + str(cache)
        )
    for root in (search or []) + [MRICRON_TEMPLATES, cache]:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"{name} not found in {MRICRON_TEMPLATES}: install Debian's package mricron-data "
        "(`apt-get install mricron-data`)"
    )


def extract_from_wheel(wheel: Path, member: str, dest: Path) -> Path:
    """Extract one file from a downloaded wheel (how MNI152 is fetched without nilearn)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / Path(member).name
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise FileNotFoundError(f"{wheel.name} does not contain {member}") from None
        tmp = out.with_suffix(".part")
        with zf.open(info) as src, open(tmp, "wb") as dst:
            dst.write(src.read())
        tmp.replace(out)
    return out
