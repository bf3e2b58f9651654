"""Training and validation images from every source, behind one call.

``load_slices(spec, split)`` returns 2D float32 images in [0, 1].  ``spec["kind"]`` picks
the source:

- ``brats``: BraTS, one folder per subject, any release's naming (2019
  ``{HGG,LGG}/BraTS19_*/..._t1ce.nii.gz``, 2020 ``BraTS20_Training_001/..._t1ce.nii``,
  2021 ``BraTS2021_00000/..._t1ce.nii.gz``, 2023+ ``BraTS-GLI-*/...-t1c.nii.gz``); slices
  across :func:`~metasrgan.volume.through_plane_axis` (axial for BraTS); subject-level split.
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
reported either way; ``skip`` leaves it out and goes on).

Splits are deterministic and stable: items are ranked by a hash of ``seed:name`` and the
first ``round(val_fraction * n)`` form ``val`` (at least one of two or more), so adding
files moves few others.  ``split`` is ``train``, ``val`` or ``all``.
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
    PLAIN_SUFFIXES,
    ImageReadError,
    MRImage,
    find_images,
    read_image,
    stem_of,
    suffix_of,
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

COMMON_KEYS = {"kind", "crop", "min_foreground", "normalize", "val_fraction", "seed", "on_error"}
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
    loader = globals()[f"_load_{kind}"]
    loader(spec, split, out, progress)
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
    from metasrgan.volume import stack_of_slices

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


def _load_brats(spec: dict[str, Any], split: str, out: SliceSet, progress: bool) -> None:
    root = _root(spec)
    modality = str(spec.get("modality", "t1ce"))
    subjects = brats_subjects(root, modality)
    if not subjects:
        aliases = MODALITY_ALIASES.get(modality.lower(), (modality,))
        raise FileNotFoundError(
            f"{root}: no BraTS {modality} volumes found (looked for *_{aliases[0]}.nii[.gz]"
            + "".join(f", *-{a}.nii.gz" for a in aliases[1:])
            + " in one folder per subject)"
        )
    chosen = _select(sorted(subjects), spec, split)
    paths = [subjects[s] for s in chosen]
    for path, image in _read_each(paths, spec, out, progress, "BraTS volumes"):
        _volume_slices(out, spec, path, image, None)


def _volume_slices(
    out: SliceSet, spec: dict[str, Any], path: Path, image: MRImage, axes: list[int] | None
) -> None:
    from metasrgan.volume import through_plane_axis

    volume = _normalized(image, spec, "percentile")
    if not axes:  # the project's one orientation rule: slices across the through-plane axis
        axes = [through_plane_axis(volume.shape, image.affine) if volume.ndim == 3 else 2]
    _add_volume(out, spec, volume, str(path), axes)


def _load_volumes(spec: dict[str, Any], split: str, out: SliceSet, progress: bool) -> None:
    root = _root(spec)
    paths = [
        p for p in find_images(root) if p.is_dir() or suffix_of(p) in (".nii", ".nii.gz", ".dcm")
    ]
    if not paths:
        raise FileNotFoundError(f"{root}: no NIfTI volumes or DICOM series found")
    names = [str(p.relative_to(root)) for p in paths]
    keep = set(_select(names, spec, split))
    paths = [p for p, n in zip(paths, names, strict=True) if n in keep]
    axes = spec.get("axes")
    for path, image in _read_each(paths, spec, out, progress, "volumes"):
        _volume_slices(out, spec, path, image, [int(a) for a in axes] if axes else None)


# ---------------------------------------------------------------------------- pictures

LR_FOLDER = re.compile(r"(^|_)LR($|_)")
"""DIV2K's low-resolution copies (``DIV2K_train_LR_bicubic``...): never training targets."""


def _pictures_in(root: Path) -> list[Path]:
    found = []
    for path in find_images(root):
        rel = path.relative_to(root)
        if any(LR_FOLDER.search(part) for part in rel.parts[:-1]):
            continue
        if path.is_file() and suffix_of(path) in PLAIN_SUFFIXES:
            found.append(path)
    return found


def _load_pictures(
    paths: list[Path], root: Path, spec: dict[str, Any], split: str, out: SliceSet, progress
) -> None:
    names = [str(p.relative_to(root)) for p in paths]
    keep = set(_select(names, spec, split))
    chosen = [p for p, n in zip(paths, names, strict=True) if n in keep]
    for path, image in _read_each(chosen, spec, out, progress, "images"):
        array = _normalized(image, spec, "range")
        if array.ndim == 3:  # multi-page TIFF: each page
            _add_volume(out, spec, array, str(path), [2])
        else:
            _add_slice(out, spec, array, SliceRecord(str(path)))


def _load_images(spec: dict[str, Any], split: str, out: SliceSet, progress: bool) -> None:
    root = _root(spec)
    paths = _pictures_in(root)
    if not paths:
        raise FileNotFoundError(f"{root}: no PNG/JPEG/TIFF images found")
    _load_pictures(paths, root, spec, split, out, progress)


def natural_image_folder() -> Path:
    """scikit-image's bundled data folder (found without importing scikit-image)."""
    found = importlib_util.find_spec("skimage")
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            "the natural-image stand-in for DIV2K needs scikit-image: pip install scikit-image"
        )
    return Path(list(found.submodule_search_locations)[0]) / "data"


def _load_natural(spec: dict[str, Any], split: str, out: SliceSet, progress: bool) -> None:
    root = natural_image_folder()
    paths = sorted(
        p for p in root.iterdir() if suffix_of(p) in (".png", ".jpg", ".jpeg") and p.is_file()
    )
    if not paths:
        raise FileNotFoundError(f"{root}: scikit-image's images are missing")
    _load_pictures(paths, root, spec, split, out, progress)


# ---------------------------------------------------------------------------- offline MRI


def _load_offline(spec: dict[str, Any], split: str, out: SliceSet, progress: bool) -> None:
    from metasrgan.data import offline

    names = list(spec.get("names", ["mni152", "colin27", "colin27-bet"]))
    axes = [int(a) for a in spec.get("axes", [2])]
    for name in names:
        path = offline.locate(name)
        image = read_image(path)
        out.files += 1
        volume = _normalized(image, spec, "percentile")
        if volume.ndim != 3:
            raise ImageReadError(f"{path}: expected a 3D volume, got shape {volume.shape}")
        if split == "all":
            _add_volume(out, spec, volume, name, axes)
        elif split == "train":
            if name in NEVER_TRAINED:
                raise ValueError(NEVER_TRAINED[name])
            excluded = offline.excluded_z(name)
            if excluded is None:
                _add_volume(out, spec, volume, name, axes)
            else:  # slices only from the parts above and below the slab and its guard
                z0, z1 = max(0, excluded[0]), min(volume.shape[2], excluded[1])
                _add_volume(out, spec, volume[:, :, :z0], name, axes, offset=0)
                _add_volume(out, spec, volume[:, :, z1:], name, axes, offset=z1)
        else:
            slab = _slab_of(name)
            if slab is None:
                raise ValueError(f"offline source {name!r} has no validation slab")
            _add_volume(out, spec, volume[:, :, slab.z0 : slab.z1], name, [2], offset=slab.z0)


NEVER_TRAINED = {
    "inia19": "offline source 'inia19' (another species) is never trained on; use it for val",
    "colin27-05mm": (
        "offline source 'colin27-05mm' is the validation subject at 0.5 mm and is never trained on"
    ),
}


def _slab_of(name: str):
    from metasrgan.data import offline

    base = "colin27" if name in ("colin27-bet", "colin27-05mm") else name
    for slab in list(offline.HELD_OUT_SLABS.values()) + list(offline.UNSEEN_SLABS.values()):
        if slab.source == base and name != "colin27-05mm":
            return slab
    return None


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


def _load_samples(spec: dict[str, Any], split: str, out: SliceSet, progress: bool) -> None:
    from metasrgan.samples_path import sample_path

    for name in sample_names(spec, split):
        image = read_image(sample_path(name))
        out.files += 1
        volume = _normalized(image, spec, "percentile")
        _add_volume(out, spec, volume, name, [2])


# ---------------------------------------------------------------------------- prepared


def _load_prepared(spec: dict[str, Any], split: str, out: SliceSet, progress: bool) -> None:
    from metasrgan.data.manifest import read_manifest

    root = _root(spec)
    manifest = read_manifest(root)
    rows = [r for r in manifest["slices"] if split == "all" or r["split"] == split]
    if not rows:
        raise ValueError(f"{root}: the manifest lists no slices for split {split!r}")
    paths = [root / r["file"] for r in rows]
    for path, image in _read_each(paths, spec, out, progress, "prepared slices"):
        array = _normalized(image, spec, "none" if suffix_of(path) == ".npy" else "range")
        _add_slice(
            out,
            {**spec, "min_foreground": spec.get("min_foreground", 0.0)},
            array,
            SliceRecord(str(path)),
        )
