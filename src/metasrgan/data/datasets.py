"""Training and validation images from every source, behind one call.

``load_slices(spec, split)`` returns 2D float32 images in [0, 1].  ``spec["kind"]`` picks
the source:

- ``brats``: BraTS, one folder per subject, any release's naming (2019
  ``{HGG,LGG}/BraTS19_*/..._t1ce.nii.gz``, 2020 ``BraTS20_Training_001/..._t1ce.nii``,
  2021 ``BraTS2021_00000/..._t1ce.nii.gz``, 2023+ ``BraTS-GLI-*/...-t1c.nii.gz``); slices
  across :func:`~metasrgan.geometry.through_plane_axis` (axial for BraTS); subject-level split.
- ``volumes``: a folder of NIfTI volumes / DICOM series (your own scans); slices across
  the through-plane axis, or along each of ``axes``; split per file.
- ``images``: a DIV2K-style folder of PNG/JPEG/TIFF (RGB -> luminance); split per file.
  Folders named like ``*_LR_*`` (DIV2K's low-resolution copies) are skipped.
- ``natural``: the PNG/JPEG images inside scikit-image's wheel (the DIV2K stand-in).
- ``offline``: the offline real MRI of :mod:`metasrgan.data.offline`; ``train`` never sees
  a held-out slab or its guard, ``val`` is the slab's axial slices.
- ``samples``: the bundled real MRI slabs, all their axial slices: ``train`` reads only the
  training slab (``mni152_train``), ``val`` the held-out ones (see :func:`sample_names`).
- ``prepared``: a folder written by ``metasrgan data prepare`` (slices + manifest).

Common keys: ``crop: [H, W]`` (the maximal-information crop, after the background test),
``min_foreground`` (0.05: slices with fewer non-zero pixels are skipped and counted),
``normalize`` (``percentile`` per volume, the default for scans; ``range`` = divide by the
stored type's maximum, the default for 8/16-bit pictures; ``minmax``; ``none``),
``val_fraction`` (0.2), ``seed`` (0), ``on_error`` (``stop`` | ``skip``: a bad file is
reported either way; ``skip`` leaves it out and goes on), ``repeat`` (1: in a training
stage, each slice is drawn that many times as often, a small source's share of the
batches; read by :func:`metasrgan.train.stages.load_stage_images`).

Splits are deterministic and stable: items are ranked by a hash of ``seed:name`` and the
first ``round(val_fraction * n)`` form ``val`` (at least one of two or more), so adding
files moves few others.  ``split`` is ``train``, ``val`` or ``all``.

Each kind's loader is in :mod:`metasrgan.data.sources` (its registry ``SOURCES``); this
module holds what they share: the spec checks, splits, normalisation and slicing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

import numpy as np

from metasrgan.data.crop import Box, crop, max_information_crop
from metasrgan.data.io import (
    ImageReadError,
    MRImage,
    find_images,
    read_image,
    stem_of,
)

log = logging.getLogger("metasrgan.data")

KINDS = ("brats", "volumes", "images", "natural", "offline", "samples", "prepared")
SPLITS = ("train", "val", "all")
NORMALIZATIONS = ("percentile", "range", "minmax", "none")
MODALITY_ALIASES: dict[str, tuple[str, ...]] = {
    "t1ce": ("t1ce", "t1c"),
    "t1": ("t1", "t1n"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2f"),
}
"""BraTS 2023+ renamed the modalities (t1c, t1n, t2w, t2f); both spellings are accepted."""

COMMON_KEYS = {
    "kind", "crop", "min_foreground", "normalize", "val_fraction", "seed", "on_error", "repeat"
}  # fmt: skip
KIND_KEYS: dict[str, set[str]] = {
    "brats": {"root", "modality"},
    "volumes": {"root", "axes"},
    "images": {"root"},
    "natural": set(),
    "offline": {"names", "axes"},
    "samples": {"names"},
    "prepared": {"root"},
}


@dataclass
class SliceRecord:
    """Where one slice came from."""

    source: str
    axis: int | None = None
    index: int | None = None
    box: Box | None = None


@dataclass
class SliceSet:
    """The slices of one source and split, with what was left out and why."""

    kind: str
    split: str
    images: list[np.ndarray] = field(default_factory=list)
    records: list[SliceRecord] = field(default_factory=list)
    skipped_background: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    files: int = 0

    def add(self, image: np.ndarray, record: SliceRecord) -> None:
        self.images.append(image)
        self.records.append(record)

    def summary(self) -> str:
        text = (
            f"{self.kind} [{self.split}]: {len(self.images)} slices from {self.files} "
            f"files/volumes; {self.skipped_background} mostly-background slices skipped"
        )
        if self.failed:
            text += f"; {len(self.failed)} unreadable files skipped"
        return text


# ---------------------------------------------------------------------------- entry points


def load_slices(source_spec: dict[str, Any], split: str) -> list[np.ndarray]:
    """2D float32 images in [0, 1] for ``split`` (see the module docstring for the specs)."""
    return load_dataset(source_spec, split).images


def load_dataset(source_spec: dict[str, Any], split: str, progress: bool = True) -> SliceSet:
    """Like :func:`load_slices`, also returning where each slice came from and what was
    skipped.  The summary is logged at INFO and every skipped file at WARNING."""
    spec = dict(source_spec)
    check_spec(spec)
    kind = spec["kind"]
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is unknown; choose from {', '.join(SPLITS)}")
    out = SliceSet(kind=kind, split=split)
    from metasrgan.data.sources import SOURCES

    SOURCES.constructor(kind)(spec, split, out, progress)
    if not out.images:
        raise ValueError(
            f"{_describe(spec)}: no usable slices for split {split!r} "
            f"({out.skipped_background} mostly-background slices, {len(out.failed)} bad files)"
        )
    log.info(out.summary())
    return out


def check_spec(spec: dict[str, Any]) -> None:
    """Raise ValueError for an unknown kind, key or option value (no file is read)."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"data source kind {kind!r} is unknown; choose from {', '.join(KINDS)}")
    unknown = set(spec) - COMMON_KEYS - KIND_KEYS[kind]
    if unknown:
        raise ValueError(f"{kind} data source: unknown keys {', '.join(sorted(unknown))}")
    if spec.get("on_error", "stop") not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', got {spec['on_error']!r}")
    if spec.get("normalize", "percentile") not in NORMALIZATIONS:
        raise ValueError(
            f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {spec['normalize']!r}"
        )
    size = spec.get("crop")
    if size is not None and (
        not isinstance(size, (list, tuple)) or len(size) != 2 or min(int(v) for v in size) < 1
    ):
        raise ValueError(f"crop must be [height, width] in pixels, got {size!r}")
    repeat = spec.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a whole number >= 1, got {repeat!r}")
    if not 0.0 <= float(spec.get("val_fraction", 0.2)) <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {spec['val_fraction']!r}")


def _describe(spec: dict[str, Any]) -> str:
    where = spec.get("root") or ",".join(spec.get("names", [])) or ""
    return f"{spec['kind']} data source {where}".strip()


# ---------------------------------------------------------------------------- helpers


def split_items(names: list[str], val_fraction: float = 0.2, seed: int = 0) -> set[str]:
    """The names that form ``val``: the first ``round(val_fraction * n)`` by hash rank."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    unique = sorted(set(names))
    n = len(unique)
    n_val = round(val_fraction * n)
    if n >= 2 and 0.0 < val_fraction < 1.0:
        n_val = min(max(n_val, 1), n - 1)
    ranked = sorted(unique, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    return set(ranked[:n_val])


def _select(names: list[str], spec: dict[str, Any], split: str) -> list[str]:
    if split == "all":
        return list(names)
    val = split_items(names, float(spec.get("val_fraction", 0.2)), int(spec.get("seed", 0)))
    return [n for n in names if (n in val) == (split == "val")]


def normalize_volume(array: np.ndarray, kind: str, source_dtype: str | None = None) -> np.ndarray:
    """Map one volume/image to [0, 1] as configured (see the module docstring)."""
    from metasrgan.intensity import IntensityMap

    array = np.asarray(array, dtype=np.float32)
    if kind == "percentile":
        return IntensityMap.fit(array).apply(array, clip=True).astype(np.float32)
    if kind == "range":
        if source_dtype and np.dtype(source_dtype).kind in "ui":
            top = float(np.iinfo(np.dtype(source_dtype)).max)
            return np.clip(array / top, 0.0, 1.0).astype(np.float32)
        kind = "minmax"
    if kind == "minmax":
        lo, hi = float(array.min()), float(array.max())
        if hi <= lo:
            raise ValueError("the image is constant; there is nothing to super-resolve")
        return ((array - lo) / (hi - lo)).astype(np.float32)
    if kind == "none":
        lo, hi = float(array.min()), float(array.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"normalize: none needs values in [0, 1], found {lo:g}..{hi:g}; "
                "use percentile or minmax"
            )
        return np.clip(array, 0.0, 1.0)
    raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {kind!r}")


def _add_slice(out: SliceSet, spec: dict[str, Any], image: np.ndarray, record: SliceRecord) -> None:
    """Background test, then the optional crop."""
    min_fg = float(spec.get("min_foreground", 0.05))
    if image.size == 0 or float((image > 0).mean()) < min_fg:
        out.skipped_background += 1
        return
    size = spec.get("crop")
    if size:
        box = max_information_crop(image, (int(size[0]), int(size[1])))
        image = crop(image, box)
        record.box = box
    out.add(np.ascontiguousarray(image, dtype=np.float32), record)


def _add_volume(
    out: SliceSet,
    spec: dict[str, Any],
    volume: np.ndarray,
    source: str,
    axes: list[int],
    offset: int = 0,
) -> None:
    """Every slice of ``volume`` (already normalised) along each of ``axes``."""
    from metasrgan.geometry import stack_of_slices

    if volume.ndim == 2:
        _add_slice(out, spec, volume, SliceRecord(source))
        return
    for axis in axes:
        if not 0 <= axis < volume.ndim:
            raise ValueError(f"{source}: axis {axis} does not exist in shape {volume.shape}")
        stack = np.ascontiguousarray(stack_of_slices(volume, axis))  # one copy, not per slice
        for index in range(stack.shape[0]):
            image = stack[index]
            first = offset if axis == 2 else 0
            _add_slice(out, spec, image, SliceRecord(source, axis, index + first))


def _read_each(paths: list[Path], spec: dict[str, Any], out: SliceSet, progress: bool, what: str):
    """Yield ``(path, image)`` for each readable file; bad files stop or are skipped."""
    from tqdm import tqdm

    on_error = spec.get("on_error", "stop")
    bar = tqdm(paths, desc=f"reading {what}", unit="file", disable=None if progress else True)
    for path in bar:
        try:
            image = read_image(path)
        except ImageReadError as err:
            if on_error == "stop":
                raise ImageReadError(
                    f"{err} (set on_error: skip in the data source to leave bad files out)"
                ) from None
            log.warning("skipping %s", err)
            out.failed.append((str(path), str(err)))
            continue
        out.files += 1
        yield path, image


def _root(spec: dict[str, Any]) -> Path:
    if "root" not in spec:
        raise ValueError(f"{spec['kind']} data source needs a 'root' folder")
    root = Path(os.path.expanduser(str(spec["root"])))
    if not root.is_dir():
        raise FileNotFoundError(f"{spec['kind']} data source: {root} is not a folder")
    return root


def _normalized(image: MRImage, spec: dict[str, Any], default: str) -> np.ndarray:
    try:
        return normalize_volume(image.array, spec.get("normalize", default), image.source_dtype)
    except ValueError as err:
        raise ImageReadError(f"{image.path}: {err}") from None


# ---------------------------------------------------------------------------- BraTS


def brats_subjects(root: Path, modality: str = "t1ce") -> dict[str, Path]:
    """``subject id -> file`` of one modality, for any BraTS release's layout."""
    names = MODALITY_ALIASES.get(modality.lower(), (modality.lower(),))
    pattern = re.compile(
        r"^(?P<subject>.+)[_-](?:" + "|".join(map(re.escape, names)) + r")\.nii(?:\.gz)?$",
        re.IGNORECASE,
    )
    found: dict[str, Path] = {}
    for path in find_images(root):  # the one image finder (hidden files and folders skipped)
        if path.is_dir() or not pattern.match(path.name):
            continue
        subject = path.parent.name if path.parent != root else stem_of(path)
        if subject in found:
            # the same case twice (e.g. .nii and .nii.gz): keep the first, say so
            log.warning("%s: subject %s already read from %s", path, subject, found[subject])
            continue
        found[subject] = path
    return found


def natural_image_folder() -> Path:
    """scikit-image's bundled data folder (found without importing scikit-image)."""
    found = importlib_util.find_spec("skimage")
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            "the natural-image stand-in for DIV2K needs scikit-image: pip install scikit-image"
        )
    return Path(list(found.submodule_search_locations)[0]) / "data"


def sample_names(spec: dict[str, Any], split: str) -> list[str]:
    """The bundled samples a ``samples`` source reads for ``split``: ``train`` only those of
    :data:`~metasrgan.samples_path.TRAINING_SAMPLES` (naming another is an error: validation
    data are never trained on), ``val`` the others, ``all`` every one."""
    from metasrgan.samples_path import SAMPLES, TRAINING_SAMPLES

    if split == "all":
        default = list(SAMPLES)
    elif split == "train":
        default = list(TRAINING_SAMPLES)
    else:
        default = [n for n in SAMPLES if n not in TRAINING_SAMPLES]
    names = list(spec.get("names", default))
    if split == "train":
        held_out = [n for n in names if n not in TRAINING_SAMPLES]
        if held_out:
            raise ValueError(
                f"samples {', '.join(held_out)} are held out of training; "
                f"train on {', '.join(TRAINING_SAMPLES)}"
            )
    return names
