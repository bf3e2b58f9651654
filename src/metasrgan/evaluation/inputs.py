"""Evaluation inputs: HR slices in [0, 1] from samples, files, folders or a BraTS root."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metasrgan.metrics import luminance

MIN_FOREGROUND = 0.01
"""Slices of a volume with fewer non-zero pixels than this fraction are skipped."""
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".npy", ".dcm", *PICTURE_SUFFIXES)


@dataclass
class EvalImage:
    """One HR slice in [0, 1] and where it came from (``source:z012``)."""

    name: str
    array: np.ndarray
    window: tuple[int, int, int, int] | None = None  # metric crop, set by evaluate()


def _read_array(path: Path) -> np.ndarray:
    """The image or volume with its axial axis last (found from the affine, as training does)."""
    from metasrgan.data.datasets import axial_axis
    from metasrgan.data.io import read_image

    image = read_image(path)
    data = np.asarray(image.array, dtype=np.float32)
    if data.ndim == 3 and image.affine is not None:
        data = np.moveaxis(data, axial_axis(image), -1)
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


def _bundled_samples() -> dict[str, Path]:
    from importlib import resources

    folder = Path(str(resources.files("metasrgan") / "samples"))
    return {p.name.removesuffix(".nii.gz"): p for p in sorted(folder.glob("*.nii.gz"))}


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
    bundled = _bundled_samples()
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
            paths = [(_stem(path), path)]
        else:
            volumes = _brats_volumes(path)
            if not volumes:
                volumes = [
                    p
                    for p in sorted(path.iterdir())
                    if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)
                ]
            if not volumes:
                raise FileNotFoundError(f"{path}: no images, volumes or BraTS t1ce files in it")
            if all(p.name.lower().endswith(".dcm") for p in volumes):
                paths = [(path.name, path)]  # a DICOM series: one volume
            else:
                paths = [(_stem(p), p) for p in volumes]
    images: list[EvalImage] = []
    for name, p in paths:
        try:
            picture = p.name.lower().endswith(PICTURE_SUFFIXES)
            images.extend(slices_of(name, _read_array(p), picture))
        except ValueError as err:
            raise ValueError(f"{p}: {err}") from None
    if not images:
        raise ValueError(f"--data {data!r}: no slice has enough non-zero pixels to evaluate")
    if max_images and len(images) > max_images:
        keep = np.unique(np.linspace(0, len(images) - 1, max_images).round().astype(int))
        images = [images[i] for i in keep]
    return images


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".npy", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
