"""What every reader shares: the image type, the error types, size limits and file checks.

The limits are checked from headers before any voxel is decoded, so a 20000x20000 PNG or a
small gzip that inflates to gigabytes is refused at once, with the numbers, instead of
exhausting memory first.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metasrgan.atomic import interrupt_in_chain

DEFAULT_MAX_VOXELS = 256 * 1024 * 1024
"""Largest image a reader decodes: 268,435,456 voxels (1 GiB as float32), e.g. 645^3 or
16384x16384; a BraTS volume has 8.9 million.  ``METASRGAN_MAX_VOXELS`` or ``max_voxels=``
change it."""

MAX_VOXELS_ENV = "METASRGAN_MAX_VOXELS"


class ImageReadError(ValueError):
    """A file that cannot be used as an image; the message names the file and the problem."""


class ImageTooLargeError(ImageReadError):
    """The header declares more voxels than the configured limit (nothing was decoded)."""


class ImageWriteError(ValueError):
    """An image that cannot be written in the requested format."""


@dataclass
class MRImage:
    """Voxels plus geometry.

    Attributes:
        array: float32, 2D or 3D (4D only when read with ``allow_4d=True``).
        affine: 4x4 voxel -> world (mm, RAS+) matrix; None for plain images.
        spacing: voxel size along each array axis (mm for scans, 1.0 for plain images).
        path: where it was read from, if anywhere.
        header: the nibabel header of a NIfTI file (writers copy its sform/qform codes).
        source_dtype: the stored data type (``"uint8"``, ``"int16"``...), for value ranges.
    """

    array: np.ndarray
    affine: np.ndarray | None = None
    spacing: tuple[float, ...] = ()
    path: Path | None = None
    header: object | None = None
    source_dtype: str | None = None

    def __post_init__(self) -> None:
        if not self.spacing:  # from the affine's column lengths, else 1 per axis
            nd = self.array.ndim
            if self.affine is not None:
                from metasrgan.geometry import spacing_of

                zooms = spacing_of(self.affine)
                self.spacing = tuple(zooms[: min(nd, 3)]) + (1.0,) * (nd - 3)
            else:
                self.spacing = (1.0,) * nd

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def suffix_of(path: str | os.PathLike) -> str:
    """The lower-case ending, with ``.nii.gz`` kept whole."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def stem_of(path: str | os.PathLike) -> str:
    """The file name without its (possibly double) ending."""
    name = Path(path).name
    suffix = suffix_of(path)
    return name[: len(name) - len(suffix)] if suffix else name


# ---------------------------------------------------------------------------- limits


def max_voxels(limit: int | None = None) -> int:
    """``limit``, else ``$METASRGAN_MAX_VOXELS``, else :data:`DEFAULT_MAX_VOXELS`."""
    if limit is not None:
        return int(limit)
    text = os.environ.get(MAX_VOXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_VOXELS
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise ImageReadError(f"${MAX_VOXELS_ENV}={text!r} is not a whole number") from None
    if value <= 0:
        raise ImageReadError(f"${MAX_VOXELS_ENV}={text!r} must be positive")
    return value


def check_size(path: Path, shape: tuple[int, ...], itemsize: int, limit: int | None) -> None:
    """Refuse ``shape`` (from a header, before decoding) when it exceeds the voxel limit."""
    voxels = math.prod(int(n) for n in shape)
    allowed = max_voxels(limit)
    if voxels > allowed:
        dims = "x".join(str(int(n)) for n in shape)
        raise ImageTooLargeError(
            f"{path}: the header declares {dims} = {voxels:,} voxels "
            f"({_human(voxels * itemsize)} stored, {_human(voxels * 4)} as float32); the limit "
            f"is {allowed:,} voxels (set ${MAX_VOXELS_ENV} to read larger images)"
        )


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


# ---------------------------------------------------------------------------- files


def check_readable_file(path: Path) -> os.stat_result:
    """A regular file we may read; otherwise an error saying which of those it is not.

    Checked before opening: reading a FIFO or a device would block or never end.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file or folder") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied (cannot look at the file)") from None
    except OSError as err:
        raise ImageReadError(f"{path}: cannot access the file: {err.strerror or err}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise ImageReadError(f"{path}: not a regular file ({kind})")
    if not os.access(path, os.R_OK):
        raise ImageReadError(f"{path}: permission denied (the file is not readable)")
    return info


def reraise_interrupt(err: BaseException) -> None:
    """Re-raise the KeyboardInterrupt (or SIGTERM, see :mod:`metasrgan.cli`) hidden in
    ``err``'s chain: a library that wrapped a Ctrl+C must not make a good file look bad."""
    interrupt = interrupt_in_chain(err)
    if interrupt is not None:
        raise interrupt


def check_geometry(
    path: Path, affine: np.ndarray | None, zooms: tuple[float, ...], ndim: int
) -> None:
    """Refuse non-finite or non-positive voxel sizes and non-finite or singular affines.

    Columns of the affine beyond the array's dimensions are not looked at (a 2D image has
    no slice direction to speak of).
    """
    for axis, zoom in enumerate(zooms[: min(ndim, 3)]):
        if not math.isfinite(zoom) or zoom <= 0:
            raise ImageReadError(
                f"{path}: voxel size {zoom:g} along axis {axis} is not a positive finite "
                "number; fix the header (NIfTI pixdim, DICOM PixelSpacing/SliceThickness)"
            )
    if affine is None:
        return
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise ImageReadError(f"{path}: the affine has NaN or Inf entries; fix the header")
    used = matrix[:3, : min(ndim, 3)]
    rank = int(np.linalg.matrix_rank(used))
    if rank < used.shape[1]:
        what = "zero" if not used.any() else f"singular (rank {rank} of {used.shape[1]})"
        raise ImageReadError(
            f"{path}: the affine is {what}: voxels would not map to distinct positions; "
            "fix the sform/qform"
        )
