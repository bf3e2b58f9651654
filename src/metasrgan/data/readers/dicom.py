"""DICOM: one file, a folder holding one series, or an enhanced (multi-frame) file.

Volumes are indexed ``[i, j, k]``: ``i`` runs along a row, ``j`` down the columns, ``k``
across slices sorted by position (as nibabel and dcm2niix do), with a RAS+ affine.  The
headers of every file are read first and the total declared size checked against the voxel
limit before any pixel data is decoded.
"""

from __future__ import annotations

import math
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
from metasrgan.data.readers.plain import LUMINANCE

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_dicom_file(path: Path) -> bool:
    """True for files with the DICOM preamble (``DICM`` at byte 128) or a ``.dcm`` name."""
    if suffix_of(path) == ".dcm":
        return True
    if not path.is_file():  # a FIFO or device would block or never end
        return False
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


def numbers(ds, key: str, count: int, where) -> tuple[float, ...] | None:
    """``key`` as ``count`` numbers; None when absent or empty; an error when malformed
    (a wrong number of values, text): header values are data, not to be trusted."""
    value = getattr(ds, key, None)
    if value is None or value == "":
        return None
    values = [value] if isinstance(value, (str, bytes, int, float)) else list(value)
    if not values:
        return None
    if len(values) != count:
        raise ImageReadError(f"{where}: {key} has {len(values)} values where {count} are needed")
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ImageReadError(f"{where}: {key} is not numeric: {value!r}") from None


def number(ds, key: str, default: float, where) -> float:
    """A single number (0 or absent: ``default``, as DICOM writers use them)."""
    found = numbers(ds, key, 1, where)
    return default if found is None or found[0] == 0 else found[0]


def count(ds, key: str, default: int, where) -> int:
    value = number(ds, key, default, where)
    if not math.isfinite(value) or value != int(value):
        raise ImageReadError(f"{where}: {key} is {value:g}, not a whole number")
    return int(value)


def read_dicom_folder(folder: Path, max_voxels: int | None = None) -> MRImage:
    try:
        files = dicom_files_in(folder)
    except PermissionError:
        raise ImageReadError(f"{folder}: permission denied (cannot list the folder)") from None
    if not files:
        raise ImageReadError(
            f"{folder}: a folder is read as one DICOM series, but it holds no DICOM files"
        )
    return read_dicom_files(folder, files, max_voxels)


def _dcmread(path: Path, stop_before_pixels: bool = False):
    import pydicom

    check_readable_file(path)
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except Exception as first:
        reraise_interrupt(first)
        try:
            return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels, force=True)
        except Exception as err:
            reraise_interrupt(err)
            raise ImageReadError(f"{path}: not a readable DICOM file: {err}") from None


def _check_declared_size(where: Path, datasets: list, max_voxels: int | None) -> None:
    """Check the series' size from Rows, Columns and NumberOfFrames before decoding."""
    frames, rows, cols = 0, 0, 0
    for f, ds in datasets:
        try:
            r, c = int(ds.Rows), int(ds.Columns)
            n = count(ds, "NumberOfFrames", 1, f)
        except (AttributeError, TypeError, ValueError):
            raise ImageReadError(f"{f}: DICOM image without valid Rows/Columns") from None
        if r < 1 or c < 1 or n < 1:
            raise ImageReadError(f"{f}: DICOM image of {r} rows, {c} columns, {n} frames")
        frames, rows, cols = frames + n, max(rows, r), max(cols, c)
    check_size(where, (cols, rows, frames), 2, max_voxels)


def read_dicom_files(where: Path, files: list[Path], max_voxels: int | None = None) -> MRImage:
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
    multi = [f for f, ds in datasets if count(ds, "NumberOfFrames", 1, f) > 1]
    if multi and len(datasets) > 1:
        raise ImageReadError(
            f"{where}: multi-frame DICOM ({multi[0].name}) beside other images; give the "
            "multi-frame file on its own"
        )
    _check_declared_size(where, datasets, max_voxels)
    if multi:
        slices = _multiframe_slices(*datasets[0])
    else:
        slices = [(f, ds, _dicom_pixels(f, ds)) for f, ds in datasets]
    shapes = {s[2].shape for s in slices}
    if len(shapes) > 1:
        raise ImageReadError(f"{where}: slices of different sizes in one series: {sorted(shapes)}")
    geometry = _dicom_geometry(where, [ds for _, ds, _ in slices])
    if geometry is None:  # no positions: order by InstanceNumber, no affine
        slices.sort(key=lambda s: count(s[1], "InstanceNumber", 0, s[0]))
        ds0 = slices[0][1]
        ps = numbers(ds0, "PixelSpacing", 2, slices[0][0]) or (1.0, 1.0)
        thick = number(ds0, "SliceThickness", 1.0, slices[0][0])
        order, affine, spacing = list(range(len(slices))), None, (ps[1], ps[0], thick)
    else:
        order, affine, spacing = geometry
    # pixel_array is [row, column]; the volume is [column, row, slice] (NIfTI voxel order)
    volume = np.stack([slices[i][2].T for i in order], axis=-1).astype(np.float32)
    check_geometry(where, affine, tuple(float(s) for s in spacing), 3)
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

    n = count(ds, "NumberOfFrames", 1, path)
    try:
        frames = np.asarray(ds.pixel_array)
    except Exception as err:
        reraise_interrupt(err)
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
        transform = SimpleNamespace(
            RescaleSlope=find(i, "PixelValueTransformationSequence", "RescaleSlope"),
            RescaleIntercept=find(i, "PixelValueTransformationSequence", "RescaleIntercept"),
        )
        slope = number(transform, "RescaleSlope", 1.0, path)
        intercept = number(transform, "RescaleIntercept", 0.0, path)
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
        reraise_interrupt(err)
        raise ImageReadError(
            f"{path}: cannot decode the DICOM pixel data (truncated, or a compressed "
            f"transfer syntax without its decoder installed): {err}"
        ) from None
    pixels = pixels.astype(np.float64)
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        pixels = pixels[..., :3] @ LUMINANCE
    if pixels.ndim != 2:
        raise ImageReadError(f"{path}: expected one 2D frame per file, got shape {pixels.shape}")
    slope = number(ds, "RescaleSlope", 1.0, path)
    intercept = number(ds, "RescaleIntercept", 0.0, path)
    pixels = pixels * slope + intercept
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        pixels = pixels.max() + pixels.min() - pixels  # bright-is-low: invert to MONOCHROME2
    return pixels.astype(np.float32)


def _dicom_geometry(where: Path, datasets: list):
    """Sort order, RAS affine and spacing from IPP/IOP/PixelSpacing; None if absent."""
    first = datasets[0]
    found = [
        numbers(first, "ImageOrientationPatient", 6, where),
        numbers(first, "PixelSpacing", 2, where),
    ]
    positions = [numbers(ds, "ImagePositionPatient", 3, where) for ds in datasets]
    if any(v is None for v in found) or any(p is None for p in positions):
        return None
    iop, ps = np.array(found[0]), list(found[1])
    ipps = np.array(positions, dtype=np.float64)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    for ds in datasets[1:]:
        other = np.array(numbers(ds, "ImageOrientationPatient", 6, where) or iop)
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
        step = number(datasets[0], "SliceThickness", 1.0, where)
        slice_vec = normal * step
    lps = np.eye(4)
    lps[:3, 0] = row_dir * ps[1]  # i runs along a row: column spacing
    lps[:3, 1] = col_dir * ps[0]  # j runs down a column: row spacing
    lps[:3, 2] = slice_vec
    lps[:3, 3] = ipps[order[0]]
    return order, LPS_TO_RAS @ lps, (ps[1], ps[0], step)
