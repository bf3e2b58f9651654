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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float64)
"""ITU-R BT.601 luma weights: the Y channel SR papers evaluate on."""

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class ImageReadError(ValueError):
    """A file that cannot be used as an image; the message names the file and the problem."""


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
                zooms = np.sqrt((np.asarray(self.affine)[:3, :3] ** 2).sum(axis=0))
                self.spacing = tuple(float(z) for z in zooms[: min(nd, 3)]) + (1.0,) * (nd - 3)
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


# ---------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike, allow_4d: bool = False, check: bool = True) -> MRImage:
    """Read any supported file (or a DICOM series folder) as float32.

    Args:
        allow_4d: accept 4D volumes (time series, multi-echo); otherwise they are an error.
        check: reject empty, constant and non-finite images (on by default: they would
            break normalisation or training silently).

    Raises:
        ImageReadError: the message names the file and says what is wrong.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder")
    if path.is_dir():
        image = _read_dicom_folder(path)
    else:
        suffix = suffix_of(path)
        if suffix in NIFTI_SUFFIXES:
            image = _read_nifti(path)
        elif suffix in PLAIN_SUFFIXES:
            image = _read_plain(path)
        elif suffix == ".npy":
            image = _read_npy(path)
        elif suffix == ".dcm" or is_dicom_file(path):
            image = _read_dicom_files(path, [path])
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
        raise ImageReadError(f"{image.path}: expected a 2D or 3D image, got shape {image.shape}")


def _read_nifti(path: Path) -> MRImage:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        if np.dtype(img.get_data_dtype()).kind == "c":
            raise ImageReadError(f"{path}: complex-valued NIfTI; save the magnitude instead")
        array = np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
    except ImageReadError:
        raise
    except Exception as err:  # nibabel/gzip/zlib raise many types for damaged files
        raise ImageReadError(
            f"{path}: not a readable NIfTI file (corrupt or truncated?): {err}"
        ) from None
    while array.ndim > 3 and array.shape[-1] == 1:  # (X, Y, Z, 1) is a 3D volume
        array = array[..., 0]
    zooms = tuple(float(z) for z in img.header.get_zooms()[: array.ndim])
    return MRImage(
        array=array,
        affine=np.asarray(img.affine, dtype=np.float64),
        spacing=zooms,
        header=img.header,
        source_dtype=str(img.get_data_dtype()),
    )


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., :3].astype(np.float64) @ LUMINANCE).astype(np.float32)


def _read_plain(path: Path) -> MRImage:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            frames = []
            for index in range(getattr(im, "n_frames", 1)):
                im.seek(index)
                frames.append(_pil_to_array(im))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(
            f"{path}: not a readable image (corrupt or truncated?): {err}"
        ) from None
    array = frames[0][0] if len(frames) == 1 else np.stack([f[0] for f in frames], axis=-1)
    return MRImage(array=array, affine=None, spacing=(1.0,) * array.ndim, source_dtype=frames[0][1])


def _pil_to_array(im) -> tuple[np.ndarray, str]:
    mode = im.mode
    if mode in ("P", "PA"):
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("1", "L", "LA"):
        arr = np.asarray(im.convert("L"))
        return arr.astype(np.float32), "uint8"
    if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        arr = np.asarray(im.convert("RGB"))
        return _luminance(arr), "uint8"
    arr = np.asarray(im)  # I;16, I, F modes
    dtype = "uint16" if mode.startswith("I;16") else str(arr.dtype)
    if arr.ndim == 3:
        return _luminance(arr), dtype
    return arr.astype(np.float32), dtype


def _read_npy(path: Path) -> MRImage:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ImageReadError(
            f"{path}: not a readable .npy array (corrupt or truncated?): {err}"
        ) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise ImageReadError(f"{path}: .npy holds {arr.dtype} data; a numeric array is needed")
    return MRImage(
        array=arr.astype(np.float32),
        affine=None,
        spacing=(1.0,) * arr.ndim,
        source_dtype=str(arr.dtype),
    )


# ---------------------------------------------------------------------------- DICOM


def is_dicom_file(path: Path) -> bool:
    """True for files with the DICOM preamble (``DICM`` at byte 128) or a ``.dcm`` name."""
    if suffix_of(path) == ".dcm":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def dicom_files_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and is_dicom_file(p)
    )


def _read_dicom_folder(folder: Path) -> MRImage:
    files = dicom_files_in(folder)
    if not files:
        raise ImageReadError(
            f"{folder}: a folder is read as one DICOM series, but it holds no DICOM files"
        )
    return _read_dicom_files(folder, files)


def _dcmread(path: Path, stop_before_pixels: bool = False):
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except Exception:
        try:
            return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels, force=True)
        except Exception as err:
            raise ImageReadError(f"{path}: not a readable DICOM file: {err}") from None


def _read_dicom_files(where: Path, files: list[Path]) -> MRImage:
    datasets = []
    for f in files:
        ds = _dcmread(f)
        if "PixelData" not in ds:
            if _should_have_pixels(ds):
                raise ImageReadError(f"{f}: DICOM file without pixel data (truncated or corrupt?)")
            if len(files) == 1:
                raise ImageReadError(f"{f}: DICOM file without pixel data (a DICOMDIR or report?)")
            continue  # a DICOMDIR, report or other non-image object beside the series
        datasets.append((f, ds))
    if not datasets:
        raise ImageReadError(f"{where}: no DICOM image in this folder has pixel data")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in datasets}
    if len(series) > 1:
        uids = ", ".join(sorted(series)[:4]) + ("..." if len(series) > 4 else "")
        raise ImageReadError(
            f"{where}: the folder mixes {len(series)} DICOM series; give one series per folder "
            f"(SeriesInstanceUIDs: {uids})"
        )
    multi = [f for f, ds in datasets if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1]
    if multi and len(datasets) > 1:
        raise ImageReadError(
            f"{where}: multi-frame DICOM ({multi[0].name}) beside other images; give the "
            "multi-frame file on its own"
        )
    if multi:
        slices = _multiframe_slices(*datasets[0])
    else:
        slices = [(f, ds, _dicom_pixels(f, ds)) for f, ds in datasets]
    shapes = {s[2].shape for s in slices}
    if len(shapes) > 1:
        raise ImageReadError(f"{where}: slices of different sizes in one series: {sorted(shapes)}")
    geometry = _dicom_geometry(where, [ds for _, ds, _ in slices])
    if geometry is None:  # no positions: order by InstanceNumber, no affine
        slices.sort(key=lambda s: int(getattr(s[1], "InstanceNumber", 0) or 0))
        ds0 = slices[0][1]
        ps = [float(v) for v in getattr(ds0, "PixelSpacing", [1.0, 1.0])]
        thick = float(getattr(ds0, "SliceThickness", 1.0) or 1.0)
        order, affine, spacing = list(range(len(slices))), None, (ps[1], ps[0], thick)
    else:
        order, affine, spacing = geometry
    # pixel_array is [row, column]; the volume is [column, row, slice] (NIfTI voxel order)
    volume = np.stack([slices[i][2].T for i in order], axis=-1).astype(np.float32)
    if volume.shape[-1] == 1:
        volume, spacing = volume[..., 0], spacing[:2]
    return MRImage(
        array=volume,
        affine=affine,
        spacing=tuple(float(s) for s in spacing),
        source_dtype=None,
    )


def _multiframe_slices(path: Path, ds) -> list[tuple[str, object, np.ndarray]]:
    """The frames of an enhanced (multi-frame) file as slices with their own geometry,
    read from the per-frame and shared functional groups."""
    from types import SimpleNamespace

    n = int(ds.NumberOfFrames)
    try:
        frames = np.asarray(ds.pixel_array)
    except Exception as err:
        raise ImageReadError(f"{path}: cannot decode the multi-frame pixel data: {err}") from None
    if frames.ndim == 2 and n == 1:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[0] != n:
        raise ImageReadError(
            f"{path}: expected {n} grayscale frames, got pixel data of shape {frames.shape}"
        )
    shared_seq = getattr(ds, "SharedFunctionalGroupsSequence", None)
    shared = shared_seq[0] if shared_seq else None
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None) or []

    def find(i: int, sequence: str, key: str):
        for group in (per_frame[i] if i < len(per_frame) else None, shared):
            items = getattr(group, sequence, None) if group is not None else None
            if items and key in items[0]:
                return getattr(items[0], key)
        return getattr(ds, key, None)

    monochrome1 = str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1"
    slices = []
    for i in range(n):
        frame = SimpleNamespace(InstanceNumber=i + 1)
        for sequence, key in (
            ("PlaneOrientationSequence", "ImageOrientationPatient"),
            ("PlanePositionSequence", "ImagePositionPatient"),
            ("PixelMeasuresSequence", "PixelSpacing"),
            ("PixelMeasuresSequence", "SliceThickness"),
        ):
            value = find(i, sequence, key)
            if value is not None:
                setattr(frame, key, value)
        slope = float(find(i, "PixelValueTransformationSequence", "RescaleSlope") or 1.0)
        intercept = float(find(i, "PixelValueTransformationSequence", "RescaleIntercept") or 0.0)
        pixels = frames[i].astype(np.float64) * slope + intercept
        if monochrome1:
            pixels = pixels.max() + pixels.min() - pixels
        slices.append((f"{path} frame {i + 1}", frame, pixels.astype(np.float32)))
    return slices


def _should_have_pixels(ds) -> bool:
    """An image object (by SOP class or image attributes) or unparseable: its missing pixels
    mean a truncated or corrupt file, not a DICOMDIR or report to step over."""
    if "DirectoryRecordSequence" in ds:
        return False
    meta = getattr(ds, "file_meta", None)
    sop = str(getattr(ds, "SOPClassUID", "") or getattr(meta, "MediaStorageSOPClassUID", ""))
    if not sop:
        return True
    from pydicom.uid import UID

    return "Rows" in ds or "Image Storage" in UID(sop).name


def _dicom_pixels(path: Path, ds) -> np.ndarray:
    try:
        pixels = ds.pixel_array
    except Exception as err:
        raise ImageReadError(
            f"{path}: cannot decode the DICOM pixel data (truncated, or a compressed "
            f"transfer syntax without its decoder installed): {err}"
        ) from None
    pixels = pixels.astype(np.float64)
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        pixels = pixels[..., :3] @ LUMINANCE
    if pixels.ndim != 2:
        raise ImageReadError(f"{path}: expected one 2D frame per file, got shape {pixels.shape}")
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    pixels = pixels * slope + intercept
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        pixels = pixels.max() + pixels.min() - pixels  # bright-is-low: invert to MONOCHROME2
    return pixels.astype(np.float32)


def _dicom_geometry(where: Path, datasets: list):
    """Sort order, RAS affine and spacing from IPP/IOP/PixelSpacing; None if absent."""
    try:
        iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient], dtype=np.float64)
        ps = [float(v) for v in datasets[0].PixelSpacing]
        ipps = np.array(
            [[float(v) for v in ds.ImagePositionPatient] for ds in datasets], dtype=np.float64
        )
    except (AttributeError, TypeError, ValueError):
        return None
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    for ds in datasets[1:]:
        other = np.array([float(v) for v in ds.ImageOrientationPatient])
        if not np.allclose(other, iop, atol=1e-4):
            raise ImageReadError(f"{where}: slices of one series have different orientations")
    dist = ipps @ normal
    order = list(np.argsort(dist, kind="stable"))
    sorted_dist = dist[order]
    if len(datasets) > 1:
        steps = np.diff(sorted_dist)
        if np.any(steps < 1e-4):
            raise ImageReadError(
                f"{where}: several slices share one position (a time series or multi-echo "
                "acquisition?); split it into one folder per volume"
            )
        step = float(np.mean(steps))
        if np.ptp(steps) > 0.01 * step + 1e-4:
            raise ImageReadError(
                f"{where}: irregular slice spacing ({steps.min():.4g} to {steps.max():.4g} mm); "
                "one affine cannot describe it"
            )
        slice_vec = (ipps[order[-1]] - ipps[order[0]]) / (len(datasets) - 1)
    else:
        step = float(getattr(datasets[0], "SliceThickness", 1.0) or 1.0)
        slice_vec = normal * step
    lps = np.eye(4)
    lps[:3, 0] = row_dir * ps[1]  # i runs along a row: column spacing
    lps[:3, 1] = col_dir * ps[0]  # j runs down a column: row spacing
    lps[:3, 2] = slice_vec
    lps[:3, 3] = ipps[order[0]]
    return order, LPS_TO_RAS @ lps, (ps[1], ps[0], step)


# ---------------------------------------------------------------------------- writing


def write_image(path: str | os.PathLike, image: MRImage, bits: int = 8) -> Path:
    """Write atomically (temp file + rename) in the format named by ``path``'s ending.

    - NIfTI: float32 with ``image.affine`` (or ``diag(spacing)``), zooms from the affine,
      sform/qform codes copied from ``image.header`` when it is a NIfTI header.
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
        payload = _nifti_bytes(image, array)
        if suffix == ".nii.gz":
            payload = gzip.compress(payload, compresslevel=6)
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


def _nifti_bytes(image: MRImage, array: np.ndarray) -> bytes:
    import nibabel as nib

    affine = image.affine
    if affine is None:
        spacing = list(image.spacing[:3]) + [1.0] * (3 - min(3, len(image.spacing)))
        affine = np.diag(spacing + [1.0])
    affine = np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(array, affine)
    hdr = img.header
    sform_code, qform_code = 2, 0
    src = image.header
    if isinstance(src, nib.Nifti1Header):
        sform_code = int(src["sform_code"]) or 0
        qform_code = int(src["qform_code"]) or 0
        if sform_code == 0 and qform_code == 0:
            sform_code = 2
        hdr.set_xyzt_units(*src.get_xyzt_units())
        hdr["descrip"] = src["descrip"]
    else:
        hdr.set_xyzt_units("mm")
    hdr.set_sform(affine, code=sform_code)
    hdr.set_qform(affine, code=qform_code)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    nd = array.ndim
    hdr.set_zooms(tuple(zooms[: min(nd, 3)]) + (1.0,) * max(0, nd - 3))
    hdr.set_data_dtype(np.float32)
    hdr.set_slope_inter(1.0, 0.0)
    return img.to_bytes()


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
