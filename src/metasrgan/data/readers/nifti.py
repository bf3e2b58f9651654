"""NIfTI-1 and NIfTI-2 (``.nii``, ``.nii.gz``): the header is checked by hand before nibabel
reads a voxel.

nibabel guesses the byte order from ``dim[0]`` and silently reads a header with a bad
``vox_offset`` as data, so the fields that decide what is read (size of the header, number
and sizes of dimensions, data type, data offset) are parsed here first, with messages that
say which field is wrong.  The size limit is checked from ``dim`` before decompressing.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from metasrgan.data.readers.common import (
    ImageReadError,
    MRImage,
    check_geometry,
    check_readable_file,
    check_size,
    reraise_interrupt,
    suffix_of,
)

GZIP_MAGIC = b"\x1f\x8b"
# name: (header size, magic offset, datatype offset, dim offset, dim format, vox_offset)
LAYOUTS = {
    1: (348, 344, 70, 40, "h", (108, "f")),
    2: (540, 4, 12, 16, "q", (168, "q")),
}
PIXDIM = {1: (76, "f"), 2: (104, "d")}  # offset and type of pixdim[8]


def _read_head(path: Path, compressed: bool) -> bytes:
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if compressed and magic != GZIP_MAGIC:
            raise ImageReadError(
                f"{path}: named .nii.gz but not gzip-compressed (rename it to .nii)"
            )
        if not compressed and magic == GZIP_MAGIC:
            raise ImageReadError(f"{path}: gzip-compressed but named .nii (rename it .nii.gz)")
        stream = gzip.GzipFile(fileobj=raw) if compressed else raw
        try:
            return stream.read(540)
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as err:
            raise ImageReadError(f"{path}: corrupt or truncated gzip stream: {err}") from None


def parse_header(path: Path, head: bytes) -> tuple[int, str, tuple[int, ...], int, int]:
    """``(version, byte order, shape, NIfTI datatype code, vox_offset)`` after checking them."""
    if len(head) < 348:
        raise ImageReadError(
            f"{path}: truncated header: {len(head)} bytes, a NIfTI header has at least 348"
        )
    version = order = None
    for endian in "<>":
        size = struct.unpack_from(endian + "i", head, 0)[0]
        for v, layout in LAYOUTS.items():
            if size == layout[0] and len(head) >= layout[0]:
                version, order = v, endian
    if version is None:
        size = struct.unpack_from("<i", head, 0)[0]
        raise ImageReadError(
            f"{path}: not a NIfTI file (the header size field is {size}; NIfTI-1 has 348, "
            "NIfTI-2 540)"
        )
    hsize, moff, toff, doff, dfmt, (voff, vfmt) = LAYOUTS[version]
    magic = head[moff : moff + 4]
    if magic not in (b"n+1\0", b"n+2\0"):
        hint = "a header/image pair (.hdr/.img)" if magic in (b"ni1\0", b"ni2\0") else "magic"
        raise ImageReadError(
            f"{path}: not a single-file NIfTI ({hint} {magic!r}); convert it to .nii.gz"
        )
    dims = struct.unpack_from(f"{order}8{dfmt}", head, doff)
    ndim = int(dims[0])
    if not 1 <= ndim <= 7:
        raise ImageReadError(
            f"{path}: dim[0] = {ndim}: dimension {ndim} is not allowed (NIfTI has 1 to 7)"
        )
    shape = tuple(int(n) for n in dims[1 : ndim + 1])
    for axis, n in enumerate(shape):
        if n < 1:
            raise ImageReadError(
                f"{path}: dimension {axis + 1} has size {n} (dim[{axis + 1}] = {n}); every "
                "dimension needs at least one voxel"
            )
    poff, pfmt = PIXDIM[version]
    pixdim = struct.unpack_from(f"{order}8{pfmt}", head, poff)
    for axis in range(min(ndim, 3)):  # nibabel would silently set a zero size to 1
        size = pixdim[axis + 1]
        if not math.isfinite(size) or size == 0:
            raise ImageReadError(
                f"{path}: voxel size {size:g} along axis {axis} (pixdim[{axis + 1}]) is not a "
                "positive finite number; fix the header"
            )
    code = int(struct.unpack_from(order + "h", head, toff)[0])
    offset = struct.unpack_from(order + vfmt, head, voff)[0]
    if not np.isfinite(offset) or int(offset) < hsize + 4:
        raise ImageReadError(
            f"{path}: vox_offset {offset:g} lies inside the header (a single-file NIfTI-"
            f"{version} keeps its data from byte {hsize + 4}); fix the header"
        )
    return version, order, shape, code, int(offset)


def _data_dtype(path: Path, code: int, order: str) -> np.dtype:
    from nibabel.nifti1 import data_type_codes

    if code not in data_type_codes.value_set():
        raise ImageReadError(f"{path}: datatype code {code} is not a NIfTI data type")
    dtype = np.dtype(data_type_codes.dtype[code]).newbyteorder(order)
    if dtype.kind == "c":
        raise ImageReadError(f"{path}: complex-valued NIfTI; save the magnitude instead")
    if dtype.kind not in "biuf" or dtype.fields:
        raise ImageReadError(
            f"{path}: NIfTI datatype {data_type_codes.label[code]!r} is not a scalar "
            "intensity (RGB and other compound types are not supported)"
        )
    return dtype


def read_nifti(path: Path, max_voxels: int | None = None) -> MRImage:
    """Read a NIfTI file after checking its header (size, geometry) and its length."""
    import nibabel as nib

    info = check_readable_file(path)
    compressed = suffix_of(path) == ".nii.gz"
    try:
        head = _read_head(path, compressed)
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    version, order, shape, code, offset = parse_header(path, head)
    dtype = _data_dtype(path, code, order)
    check_size(path, shape, dtype.itemsize, max_voxels)
    needed = offset + math.prod(shape) * dtype.itemsize
    if not compressed and info.st_size < needed:
        raise ImageReadError(
            f"{path}: truncated data: the header declares {needed:,} bytes (voxels from byte "
            f"{offset}) but the file has {info.st_size:,}"
        )
    try:
        img = nib.load(str(path))
        zooms = tuple(float(z) for z in img.header.get_zooms())
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as err:  # nibabel raises several types for headers it cannot use
        reraise_interrupt(err)
        raise ImageReadError(f"{path}: NIfTI-{version} header not usable: {err}") from None
    check_geometry(path, affine, zooms, min(len(shape), 3))
    array = _read_voxels(path, img, compressed)
    while array.ndim > 3 and array.shape[-1] == 1:  # (X, Y, Z, 1) is a 3D volume
        array = array[..., 0]
    return MRImage(
        array=array,
        affine=affine,
        spacing=zooms[: array.ndim],
        header=img.header,
        source_dtype=str(dtype.newbyteorder("=")),
    )


def _read_voxels(path: Path, img, compressed: bool) -> np.ndarray:
    try:
        return np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
    except (EOFError, gzip.BadGzipFile) as err:
        reraise_interrupt(err)
        raise ImageReadError(
            f"{path}: truncated data: the compressed stream ends before the voxels do ({err})"
        ) from None
    except zlib.error as err:
        raise ImageReadError(f"{path}: corrupt compressed data ({err})") from None
    except MemoryError:
        raise ImageReadError(
            f"{path}: not enough memory to decode {img.shape} voxels as float32"
        ) from None
    except (OSError, ValueError) as err:
        reraise_interrupt(err)
        text = str(err).replace("\n", " ")
        if "Expected" in text and "bytes" in text:  # nibabel: fewer bytes than the header says
            raise ImageReadError(f"{path}: truncated data: {text}") from None
        what = "compressed stream" if compressed else "file"
        raise ImageReadError(f"{path}: the {what} could not be read: {text}") from None
