"""How each kind of data source is read: one loader per ``kind`` in :data:`SOURCES`.

A loader ``(spec, split, out, progress)`` adds the slices of ``split`` to the
:class:`~metasrgan.data.datasets.SliceSet` ``out``; :func:`metasrgan.data.datasets.
load_dataset` checks the spec and picks the loader.  A new kind is a function here
registered with ``@SOURCES.register(kind)`` (the project's one :class:`~metasrgan.registry.
Registry`) and its keys in :data:`metasrgan.data.datasets.KIND_KEYS`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from metasrgan.data.datasets import (
    MODALITY_ALIASES,
    SliceRecord,
    SliceSet,
    _add_slice,
    _add_volume,
    _normalized,
    _read_each,
    _root,
    _select,
    brats_subjects,
    natural_image_folder,
    sample_names,
)
from metasrgan.data.io import (
    PLAIN_SUFFIXES,
    ImageReadError,
    MRImage,
    find_images,
    read_image,
    suffix_of,
)
from metasrgan.registry import Registry

SOURCES = Registry("data source", error=ValueError)
"""``kind -> loader``: the data source registry (its names are
:data:`~metasrgan.data.datasets.KINDS`)."""

# ---------------------------------------------------------------------------- scans


@SOURCES.register("brats")
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
    from metasrgan.geometry import through_plane_axis

    volume = _normalized(image, spec, "percentile")
    if not axes:  # the project's one orientation rule: slices across the through-plane axis
        axes = [through_plane_axis(volume.shape, image.affine) if volume.ndim == 3 else 2]
    _add_volume(out, spec, volume, str(path), axes)


@SOURCES.register("volumes")
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


@SOURCES.register("images")
def _load_images(spec: dict[str, Any], split: str, out: SliceSet, progress: bool) -> None:
    root = _root(spec)
    paths = _pictures_in(root)
    if not paths:
        raise FileNotFoundError(f"{root}: no PNG/JPEG/TIFF images found")
    _load_pictures(paths, root, spec, split, out, progress)


@SOURCES.register("natural")
def _load_natural(spec: dict[str, Any], split: str, out: SliceSet, progress: bool) -> None:
    root = natural_image_folder()
    paths = sorted(
        p for p in root.iterdir() if suffix_of(p) in (".png", ".jpg", ".jpeg") and p.is_file()
    )
    if not paths:
        raise FileNotFoundError(f"{root}: scikit-image's images are missing")
    _load_pictures(paths, root, spec, split, out, progress)


# ---------------------------------------------------------------------------- offline MRI


@SOURCES.register("offline")
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
}


def _slab_of(name: str):
    from metasrgan.data import offline

    base = "colin27" if name in ("colin27-bet", "colin27-05mm") else name
    for slab in list(offline.HELD_OUT_SLABS.values()) + list(offline.UNSEEN_SLABS.values()):
        if slab.source == base and name != "colin27-05mm":
            return slab
    return None


@SOURCES.register("samples")
def _load_samples(spec: dict[str, Any], split: str, out: SliceSet, progress: bool) -> None:
    from metasrgan.samples_path import sample_path

    for name in sample_names(spec, split):
        image = read_image(sample_path(name))
        out.files += 1
        volume = _normalized(image, spec, "percentile")
        _add_volume(out, spec, volume, name, [2])


# ---------------------------------------------------------------------------- prepared


@SOURCES.register("prepared")
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
