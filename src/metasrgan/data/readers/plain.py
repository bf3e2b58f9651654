"""Plain images (PNG, TIFF, JPEG: one gray or RGB image, or a TIFF stack) and ``.npy``.

Pillow opens a file lazily (the header only), so every frame's size is checked against the
voxel limit before one pixel is decoded; Pillow's own decompression-bomb limit is replaced
by that check, which says the numbers and how to raise it.
"""

from __future__ import annotations

import math
import threading
import zlib
from pathlib import Path

import numpy as np

from metasrgan.data.readers.common import (
    ImageReadError,
    MRImage,
    check_readable_file,
    check_size,
    reraise_interrupt,
)

LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float64)
"""ITU-R BT.601 luma weights: the Y channel SR papers evaluate on."""

FORMATS = ("PNG", "TIFF", "JPEG")
"""What Pillow may decode here (the content must match one of the supported endings)."""
MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "I;16": 2, "RGB": 3, "RGBA": 4}
_PIL_LIMIT = threading.Lock()  # Image.MAX_IMAGE_PIXELS is global: change it under a lock


def luminance(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., :3].astype(np.float64) @ LUMINANCE).astype(np.float32)


def _open(path: Path):
    from PIL import Image

    with _PIL_LIMIT:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked by check_size
        try:
            return Image.open(path, formats=FORMATS)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def read_plain(path: Path, max_voxels: int | None = None) -> MRImage:
    from PIL import UnidentifiedImageError

    check_readable_file(path)
    try:
        im = _open(path)
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{path}: not a readable image: the content is not PNG, TIFF or JPEG"
        ) from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except (OSError, SyntaxError, ValueError) as err:
        reraise_interrupt(err)
        raise ImageReadError(f"{path}: corrupt image header: {err}") from None
    with im:
        try:
            sizes = []
            for index in range(getattr(im, "n_frames", 1)):  # seeking decodes no pixels
                im.seek(index)
                sizes.append(im.size)
            if len(set(sizes)) > 1:
                sizes_text = sorted(set(sizes))
                raise ImageReadError(f"{path}: the frames have different sizes: {sizes_text}")
            w, h = sizes[0]
            stored = MODE_BYTES.get(im.mode, 4)
            check_size(path, (h, w) + ((len(sizes),) if len(sizes) > 1 else ()), stored, max_voxels)
            frames = []
            for index in range(len(sizes)):
                im.seek(index)
                frames.append(_pil_to_array(im))
        except ImageReadError:
            raise
        except (OSError, SyntaxError, ValueError, zlib.error, EOFError) as err:
            reraise_interrupt(err)
            raise ImageReadError(f"{path}: {_pixel_problem(err)}") from None
    array = frames[0][0] if len(frames) == 1 else np.stack([f[0] for f in frames], axis=-1)
    return MRImage(array=array, affine=None, spacing=(1.0,) * array.ndim, source_dtype=frames[0][1])


def _pixel_problem(err: BaseException) -> str:
    text = str(err)
    if "truncated" in text.lower() or isinstance(err, EOFError):
        return f"truncated data: the pixels end early (corrupt or truncated file?): {text}"
    return f"the pixel data cannot be decoded (corrupt or truncated file?): {text}"


def _pil_to_array(im) -> tuple[np.ndarray, str]:
    mode = im.mode
    if mode in ("P", "PA"):
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("1", "L", "LA"):
        arr = np.asarray(im.convert("L"))
        return arr.astype(np.float32), "uint8"
    if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        arr = np.asarray(im.convert("RGB"))
        return luminance(arr), "uint8"
    arr = np.asarray(im)  # I;16, I, F modes
    dtype = "uint16" if mode.startswith("I;16") else str(arr.dtype)
    if arr.ndim == 3:
        return luminance(arr), dtype
    return arr.astype(np.float32), dtype


def read_npy(path: Path, max_voxels: int | None = None) -> MRImage:
    """A ``.npy`` array (never unpickled); its header's shape is checked before loading."""
    info = check_readable_file(path)
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _fortran, dtype = fmt.read_array_header_1_0(f)
            else:
                shape, _fortran, dtype = fmt.read_array_header_2_0(f)
            offset = f.tell()
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        reraise_interrupt(err)
        raise ImageReadError(f"{path}: not a .npy array (bad header: {err})") from None
    if dtype.kind not in "biuf" or dtype.hasobject:
        raise ImageReadError(f"{path}: .npy holds {dtype} data; a numeric array is needed")
    check_size(path, tuple(shape), dtype.itemsize, max_voxels)
    needed = offset + math.prod(shape) * dtype.itemsize
    if info.st_size < needed:
        raise ImageReadError(
            f"{path}: truncated data: the header declares {needed:,} bytes but the file has "
            f"{info.st_size:,}"
        )
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        reraise_interrupt(err)
        raise ImageReadError(f"{path}: the .npy array cannot be read: {err}") from None
    return MRImage(
        array=arr.astype(np.float32),
        affine=None,
        spacing=(1.0,) * arr.ndim,
        source_dtype=str(arr.dtype),
    )
