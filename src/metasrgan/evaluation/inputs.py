"""Evaluation inputs: HR slices in [0, 1] from samples, files, folders or a BraTS root."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metasrgan.data.io import PLAIN_SUFFIXES, find_images, stem_of, suffix_of
from metasrgan.metrics import luminance

MIN_FOREGROUND = 0.01
"""Slices of a volume with fewer non-zero pixels than this fraction are skipped."""


@dataclass
class EvalImage:
    """One HR slice in [0, 1] and where it came from (``source:z012``)."""

    name: str
    array: np.ndarray
    window: tuple[int, int, int, int] | None = None  # metric crop, set by evaluate()


def _read_array(path: Path) -> np.ndarray:
    """The image, or the volume with its slices stacked along the last axis: slices are cut
    perpendicular to :func:`~metasrgan.geometry.through_plane_axis` (the project's one rule)."""
    from metasrgan.data.io import read_image
    from metasrgan.geometry import stack_of_slices, through_plane_axis, volume_of_slices

    image = read_image(path)
    data = np.asarray(image.array, dtype=np.float32)
    if data.ndim == 3 and image.affine is not None:
        axis = through_plane_axis(data.shape, image.affine)
        data = volume_of_slices(stack_of_slices(data, axis), 2)
    return data


def slices_of(name: str, data: np.ndarray, picture: bool = False) -> Iterator[EvalImage]:
    """HR slices in [0, 1]: a 2D image or the axial (last-axis) slices of a volume.

    ``picture``: the data came from a PNG/JPEG/TIFF, so ``H x W x 3`` is RGB (compared on
    its BT.601 luminance) rather than a volume of three slices.
    """
    from metasrgan.intensity import IntensityMap

    data = np.asarray(data, dtype=np.float32)
    if picture and data.ndim == 3 and data.shape[-1] in (3, 4):
        data = luminance(data[..., :3]).astype(np.float32)  # RGB(A): compare on BT.601 Y
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a 2D image or a 3D volume, got shape {data.shape}")
    unit = IntensityMap.fit(data).apply(data)
    if unit.ndim == 2:
        yield EvalImage(name, unit)
        return
    for z in range(unit.shape[-1]):
        sl = np.ascontiguousarray(unit[..., z])
        if np.count_nonzero(sl) >= MIN_FOREGROUND * sl.size:
            yield EvalImage(f"{name}:z{z:03d}", sl)


def _brats_volumes(root: Path) -> list[Path]:
    from metasrgan.data.datasets import brats_subjects

    return list(brats_subjects(root, "t1ce").values())


def load_images(data: str, max_images: int | None = None) -> list[EvalImage]:
    """HR slices for ``--data``.

    ``data`` is ``samples`` (the validation slabs held out of training), a bundled sample
    name (``mni152_val``, ``colin27_val``, ``inia19_macaque``; comma-separated for several),
    an image or volume file, a folder of them, or a BraTS root (``*_t1ce.nii[.gz]`` or
    ``*-t1c.nii[.gz]`` anywhere below).  ``max_images`` keeps that many slices, evenly spaced.
    """
    from metasrgan.samples_path import bundled_samples

    bundled = bundled_samples()
    paths: list[tuple[str, Path]] = []
    names = [n.strip() for n in data.split(",")] if "," in data else [data]
    if all(n == "samples" or n in bundled for n in names):
        from metasrgan.data.offline import HELD_OUT_SLABS

        for n in names:
            chosen = [s for s in HELD_OUT_SLABS if s in bundled] if n == "samples" else [n]
            paths += [(s, bundled[s]) for s in chosen]
    else:
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(
                f"--data {data!r} is neither a file, a folder, 'samples' nor a bundled sample "
                f"({', '.join(bundled)})"
            )
        if path.is_file():
            paths = [(stem_of(path), path)]
        else:
            # a BraTS root, else the images in the folder (a DICOM series folder is one)
            volumes = _brats_volumes(path) or find_images(path, recursive=False)
            if not volumes:
                raise FileNotFoundError(f"{path}: no images, volumes or BraTS t1ce files in it")
            paths = [(p.name if p == path else stem_of(p), p) for p in volumes]
    images: list[EvalImage] = []
    for name, p in paths:
        try:
            picture = p.is_file() and suffix_of(p) in PLAIN_SUFFIXES
            images.extend(slices_of(name, _read_array(p), picture))
        except ValueError as err:
            raise ValueError(f"{p}: {err}") from None
    if not images:
        raise ValueError(f"--data {data!r}: no slice has enough non-zero pixels to evaluate")
    if max_images and len(images) > max_images:
        keep = np.unique(np.linspace(0, len(images) - 1, max_images).round().astype(int))
        images = [images[i] for i in keep]
    return images
