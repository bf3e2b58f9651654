"""Reading and writing images and volumes: NIfTI, DICOM, PNG/TIFF/JPEG and ``.npy``.

Every reader returns an :class:`MRImage`: float32 voxels plus the geometry needed to write
an output that overlays on the input (affine, spacing, the NIfTI header for its
sform/qform codes).  Bad input raises :class:`ImageReadError` naming the file and the
problem; nothing is silently dropped or half-read.

Array conventions: NIfTI and DICOM volumes are indexed ``[i, j, k]`` in voxel order (for
DICOM ``i`` runs along a row, ``j`` down the columns, ``k`` across slices sorted by
position, as nibabel and dcm2niix do), so ``affine @ [i, j, k, 1]`` is the RAS+ position in
mm.  Plain images are ``[row, column]`` with ``affine = None``.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np

from metasrgan.data.readers.common import (
    DEFAULT_MAX_VOXELS,
    MAX_VOXELS_ENV,
    ImageReadError,
    ImageTooLargeError,
    ImageWriteError,
    MRImage,
    max_voxels,
    stem_of,
    suffix_of,
)
from metasrgan.data.readers.dicom import (
    LPS_TO_RAS,
    dicom_files_in,
    is_dicom_file,
    read_dicom_files,
    read_dicom_folder,
)
from metasrgan.data.readers.nifti import read_nifti
from metasrgan.data.readers.plain import LUMINANCE, read_npy, read_plain

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "LPS_TO_RAS",
    "LUMINANCE",
    "MAX_VOXELS_ENV",
    "ImageReadError",
    "ImageTooLargeError",
    "ImageWriteError",
    "MRImage",
    "check_values",
    "dicom_files_in",
    "find_images",
    "is_dicom_file",
    "max_voxels",
    "read_image",
    "stem_of",
    "suffix_of",
    "write_image",
]

SUPPORTED_SUFFIXES: tuple[str, ...] = (
    ".nii",
    ".nii.gz",
    ".dcm",
    ".png",
    ".tif",
    ".tiff",
    ".jpg",
    ".jpeg",
    ".npy",
)
"""File endings :func:`read_image` understands (a folder holding one DICOM series too)."""

NIFTI_SUFFIXES = (".nii", ".nii.gz")
PLAIN_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


# ---------------------------------------------------------------------------- reading


def read_image(
    path: str | os.PathLike,
    allow_4d: bool = False,
    check: bool = True,
    max_voxels: int | None = None,
) -> MRImage:
    """Read any supported file (or a DICOM series folder) as float32.

    Args:
        allow_4d: accept 4D volumes (time series, multi-echo); otherwise they are an error.
        check: reject empty, constant and non-finite images (on by default: they would
            break normalisation or training silently).
        max_voxels: refuse images whose header declares more voxels (before decoding);
            default ``$METASRGAN_MAX_VOXELS`` or :data:`DEFAULT_MAX_VOXELS`.

    Raises:
        ImageReadError: the message names the file and says what is wrong
            (:class:`ImageTooLargeError` for the size limit).  A Ctrl+C while reading is
            always a ``KeyboardInterrupt``, never an error about the file.
    """
    path = Path(path)
    try:
        is_dir = path.is_dir()
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied (cannot look at it)") from None
    suffix = suffix_of(path)
    if is_dir and suffix not in SUPPORTED_SUFFIXES:
        image = read_dicom_folder(path, max_voxels)
    elif suffix in NIFTI_SUFFIXES:
        image = read_nifti(path, max_voxels)
    elif suffix in PLAIN_SUFFIXES:
        image = read_plain(path, max_voxels)
    elif suffix == ".npy":
        image = read_npy(path, max_voxels)
    elif suffix == ".dcm" or (path.is_file() and is_dicom_file(path)):
        image = read_dicom_files(path, [path], max_voxels)
    elif not path.exists():
        raise ImageReadError(f"{path}: no such file or folder")
    else:
        raise ImageReadError(
            f"{path}: unsupported file type {suffix or '(no extension)'!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)} or a DICOM series folder"
        )
    image.path = path
    _check_dims(image, allow_4d)
    if check:
        check_values(image.array, path)
    return image


def check_values(array: np.ndarray, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`ImageReadError` for empty, non-finite or constant images."""
    where = f"{path}: " if path is not None else ""
    if array.size == 0:
        raise ImageReadError(f"{where}the image is empty (shape {array.shape})")
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - finite.sum())
        raise ImageReadError(f"{where}{bad} voxels are NaN or Inf")
    if float(array.min()) == float(array.max()):
        raise ImageReadError(
            f"{where}the image is constant (every voxel is {float(array.flat[0]):g}); "
            "there is nothing to super-resolve"
        )


def _check_dims(image: MRImage, allow_4d: bool) -> None:
    nd = image.array.ndim
    if nd == 4 and not allow_4d:
        raise ImageReadError(
            f"{image.path}: 4D volume of shape {image.array.shape} where a 2D image or 3D "
            "volume is needed; extract one volume first (e.g. fslroi or nibabel slicing)"
        )
    if nd < 2 or nd > 4:
        raise ImageReadError(
            f"{image.path}: a {nd}D array (shape {image.shape}) is not allowed: a 2D image or "
            "3D volume is needed"
        )


# ---------------------------------------------------------------------------- writing


def write_image(
    path: str | os.PathLike, image: MRImage, bits: int = 8, *, done: str = "",
    dtype: str = "float32",
) -> Path:  # fmt: skip
    """Write atomically (temp file + rename) in the format named by ``path``'s ending.

    - NIfTI: ``dtype`` (float32, int16 or the input's, scaled) with ``image.affine`` (or
      ``diag(spacing)``); the header derived from ``image.header`` with ``done`` added to
      ``descrip`` (:func:`metasrgan.headers.derived_image`); gzip without a timestamp.
    - PNG/JPEG: ``bits`` 8 (or 16, PNG only) per pixel.  Values in [0, 1] are scaled to the
      full range; integer values that already fit are written as they are; anything else
      is min-max scaled.
    - TIFF: float32 as it is.  ``.npy``: float32 as it is.
    - DICOM: not written; use NIfTI.
    """
    from metasrgan.checkpoint import atomic_write

    path = Path(path)
    suffix = suffix_of(path)
    array = np.asarray(image.array, dtype=np.float32)
    if suffix in NIFTI_SUFFIXES:
        payload = _nifti_bytes(image, array, done, dtype)
        if suffix == ".nii.gz":
            payload = gzip.compress(payload, compresslevel=6, mtime=0)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))
    elif suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, array)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
    elif suffix in PLAIN_SUFFIXES:
        payload = _plain_bytes(path, array, suffix, bits)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))
    elif suffix == ".dcm":
        raise ImageWriteError(
            f"{path}: writing DICOM is not supported; write NIfTI (.nii.gz) instead "
            "(dcm2niix / nibabel keep the geometry)"
        )
    else:
        raise ImageWriteError(
            f"{path}: unsupported output type {suffix or '(no extension)'!r}; "
            f"use one of {', '.join(s for s in SUPPORTED_SUFFIXES if s != '.dcm')}"
        )
    return path


def _nifti_bytes(
    image: MRImage, array: np.ndarray, done: str = "", dtype: str = "float32"
) -> bytes:
    """The header rules of :func:`metasrgan.headers.derived_image`: the fields that stay
    true are kept, ``descrip`` extended with ``done``, qform/sform codes copied (1/1 for
    DICOM series, as dcm2niix), ``cal_min``/``cal_max`` recomputed, stored as ``dtype``."""
    from metasrgan.data.readers.dicom import is_dicom_file
    from metasrgan.headers import derived_image

    affine = image.affine
    if affine is None:
        spacing = list(image.spacing[:3]) + [1.0] * (3 - min(3, len(image.spacing)))
        affine = np.diag(spacing + [1.0])
    src = Path(image.path) if image.path is not None else None
    from_dicom = image.header is None and src is not None and (src.is_dir() or is_dicom_file(src))
    return derived_image(array, affine, image.header, done, dtype, from_dicom=from_dicom).to_bytes()


def _plain_bytes(path: Path, array: np.ndarray, suffix: str, bits: int) -> bytes:
    from PIL import Image

    if array.ndim != 2:
        raise ImageWriteError(
            f"{path}: {suffix} holds one 2D image, got shape {array.shape}; write NIfTI or .npy"
        )
    check_values_finite(array, path)
    buf = io.BytesIO()
    if suffix in (".tif", ".tiff"):
        Image.fromarray(array.astype(np.float32), mode="F").save(buf, format="TIFF")
        return buf.getvalue()
    if bits not in (8, 16) or (bits == 16 and suffix != ".png"):
        raise ImageWriteError(f"{path}: {suffix} is written with 8 bits (16 for PNG), got {bits}")
    top = (1 << bits) - 1
    lo, hi = float(array.min()), float(array.max())
    if lo >= 0.0 and hi <= 1.0:
        scaled = array * top
    elif lo >= 0.0 and hi <= top and np.all(array == np.round(array)):
        scaled = array
    else:
        scaled = (array - lo) / max(hi - lo, 1e-12) * top
    ints = np.clip(np.round(scaled), 0, top)
    if bits == 8:
        pil = Image.fromarray(ints.astype(np.uint8), mode="L")
    else:
        pil = Image.fromarray(ints.astype(np.uint16))
    pil.save(
        buf,
        format="PNG" if suffix == ".png" else "JPEG",
        **({"quality": 95} if suffix != ".png" else {}),
    )
    return buf.getvalue()


def check_values_finite(array: np.ndarray, path: Path) -> None:
    """Writers refuse NaN/Inf: no output file is better than a silently wrong one."""
    if not np.isfinite(array).all():
        raise ImageWriteError(f"{path}: the image has NaN or Inf values")


# ---------------------------------------------------------------------------- folders


def find_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Every readable image under ``folder``, sorted; a DICOM series folder counts as one.

    Hidden files and folders are skipped.  A file path returns ``[path]``.
    """
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found: list[Path] = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        here = Path(current)
        names = [n for n in sorted(files) if not n.startswith(".")]
        dicoms = [
            n
            for n in names
            if suffix_of(n) == ".dcm"
            or (suffix_of(n) not in SUPPORTED_SUFFIXES and is_dicom_file(here / n))
        ]
        if dicoms:
            found.append(here)
        dicom_set = set(dicoms)
        for n in names:
            if n not in dicom_set and suffix_of(n) in SUPPORTED_SUFFIXES:
                found.append(here / n)
    return sorted(found)
