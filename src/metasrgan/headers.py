"""What a derived image says about itself: its NIfTI header and its JSON sidecar.

A super-resolved image keeps every header field that stays true of it (intent, xyzt units,
``aux_file``, ``dim_info``, the qform/sform codes), says what was done in ``descrip``, and
gets ``cal_min``/``cal_max`` recomputed from its own values.  Images made from a DICOM series
get qform and sform codes 1/1 (scanner anatomical), as dcm2niix writes them.  The output
data type is float32 by default; ``int16`` and ``same`` (the input's type) store scaled
integers with ``scl_slope``/``scl_inter`` chosen by nibabel so that values round-trip to
within half a quantisation step.

The sidecar records where the image came from and how (tool, model file and its SHA-256,
factors), and is written atomically for every NIfTI output, 2D ones included.

Everything here is a pure function of its arguments except :func:`write_sidecar` and
:func:`sha256_of`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metasrgan.geometry import spacing_of

DTYPES = ("float32", "int16", "same")
"""Output data types: ``--dtype`` choices."""

DESCRIP_BYTES = 80
"""The NIfTI-1 ``descrip`` field holds 80 bytes."""

DICOM_FORM_CODE = 1
"""dcm2niix writes qform_code = sform_code = 1 (scanner anatomical) for DICOM series."""

KEPT_FIELDS = (
    "intent_code",
    "intent_p1",
    "intent_p2",
    "intent_p3",
    "intent_name",
    "aux_file",
    "dim_info",
    "toffset",
)
"""Header fields copied unchanged: none of them depends on the voxel grid or the values."""


def extend_descrip(old: bytes | str, done: str) -> bytes:
    """``descrip`` with ``done`` appended (``"old; done"``) in at most 80 bytes; the old text
    is shortened first, so what was done is always there."""
    if isinstance(old, np.ndarray):
        old = old.item()  # nibabel gives header fields as 0-d arrays
    text = old.decode("latin-1", "replace") if isinstance(old, bytes) else str(old)
    text = text.rstrip("\x00").strip()
    new = done.encode("ascii", "replace")[:DESCRIP_BYTES]
    if not text or not new:
        return new or text.encode("latin-1", "replace")[:DESCRIP_BYTES]
    room = DESCRIP_BYTES - len(new) - 2
    if room <= 0:
        return new
    kept = text.encode("latin-1", "replace")
    if len(kept) > room:
        kept = kept[: max(room - 3, 0)] + b"..."
    return kept + b"; " + new


def storage_dtype(dtype: str, source_dtype: str | np.dtype | None) -> np.dtype:
    """The on-disk type for ``--dtype`` (``same`` falls back to float32 without a source)."""
    if dtype not in DTYPES:
        raise ValueError(f"--dtype is one of {', '.join(DTYPES)}; got {dtype!r}")
    if dtype == "int16":
        return np.dtype(np.int16)
    if dtype == "same" and source_dtype is not None:
        found = np.dtype(source_dtype)
        if found.kind in "biuf":
            return found.newbyteorder("=")
    return np.dtype(np.float32)


def _form_codes(source, from_dicom: bool) -> tuple[int, int]:
    """(qform_code, sform_code) of the output."""
    if from_dicom:
        return DICOM_FORM_CODE, DICOM_FORM_CODE
    if source is None:
        return 0, 2
    qform, sform = int(source["qform_code"]), int(source["sform_code"])
    if qform == 0 and sform == 0:
        return 0, 2  # the affine came from pixdim alone; say "aligned", as before
    return qform, sform


def derived_image(
    data: np.ndarray,
    affine: np.ndarray,
    source=None,
    done: str = "",
    dtype: str = "float32",
    source_dtype: str | np.dtype | None = None,
    from_dicom: bool = False,
):
    """A ``nibabel.Nifti1Image`` of ``data`` on ``affine`` with the header of an image
    derived from ``source`` (a ``Nifti1Header``, or None for DICOM and plain images).

    Args:
        done: what was done, appended to ``descrip`` (e.g. ``"metasrgan 0.1.0 x2.5"``).
        dtype: one of :data:`DTYPES`; integer types are scaled by nibabel on writing.
        source_dtype: the input's stored type for ``same`` (default: ``source``'s).
        from_dicom: the input was a DICOM series (qform/sform codes 1/1).
    """
    import nibabel as nib

    data = np.asarray(data)
    if data.ndim not in (2, 3, 4):
        raise ValueError(f"a NIfTI output is 2D, 3D or 4D; got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError("the output has NaN or Inf values; nothing is written")
    if not isinstance(source, nib.Nifti1Header):
        source = None
    if source_dtype is None and source is not None:
        source_dtype = source.get_data_dtype()
    affine = np.asarray(affine, dtype=np.float64)
    hdr = nib.Nifti1Header()
    if source is not None:
        for field in KEPT_FIELDS:
            hdr[field] = source[field]
        hdr.set_xyzt_units(*source.get_xyzt_units())
    if hdr.get_xyzt_units()[0] == "unknown":
        hdr.set_xyzt_units("mm", hdr.get_xyzt_units()[1])
    hdr["descrip"] = extend_descrip(source["descrip"] if source is not None else b"", done)
    img = nib.Nifti1Image(data.astype(np.float32, copy=False), affine, hdr)
    hdr = img.header
    qform, sform = _form_codes(source, from_dicom)
    hdr.set_qform(affine, code=qform)
    hdr.set_sform(affine, code=sform)
    zooms = spacing_of(affine)
    extra = () if data.ndim <= 3 else tuple(source.get_zooms()[3:4]) if source else (1.0,)
    hdr.set_zooms(tuple(zooms[: min(data.ndim, 3)]) + extra)
    target = storage_dtype(dtype, source_dtype)
    hdr.set_data_dtype(target)
    if target.kind == "f":
        hdr.set_slope_inter(1.0, 0.0)
    else:
        hdr.set_slope_inter(np.nan, np.nan)  # nibabel chooses the scaling on writing
    hdr["cal_min"], hdr["cal_max"] = float(data.min()), float(data.max())
    return img


def nifti_bytes(img, compressed: bool) -> bytes:
    """The file's bytes (gzip when ``compressed``, with a zero timestamp: the same image
    gives the same bytes), scaling applied as the header says."""
    import gzip

    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0) if compressed else raw


def write_nifti(path: str | os.PathLike, img) -> Path:
    """Write ``img`` atomically (temporary file + rename)."""
    from metasrgan.atomic import atomic_write

    path = Path(path)
    payload = nifti_bytes(img, path.name.lower().endswith(".gz"))
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))
    return path


# ---------------------------------------------------------------------------- sidecars


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_record(path: str | os.PathLike | None, metadata: dict[str, Any] | None = None) -> dict:
    """Name, file and SHA-256 of the model that made an output (``Untrained`` without one)."""
    meta = metadata or {}
    spec = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    name = meta.get("name") or spec.get("name") or "meta-srgan"
    if path is None:
        return {"Name": name, "Untrained": True}
    path = Path(path)
    return {"Name": name, "File": path.name, "SHA256": sha256_of(path)}


def model_record_of(model) -> dict:
    """:func:`model_record` of a loaded model (:func:`metasrgan.inference.load` keeps the
    file's path as ``model.source_path``)."""
    meta = getattr(model, "metadata", None) or {}
    path = getattr(model, "source_path", None)
    if path is None and not meta.get("untrained"):
        return {"Name": meta.get("name") or "meta-srgan", "File": None}
    return model_record(path, meta)


def sidecar_path(image_path: str | os.PathLike) -> Path | None:
    """``x.json`` beside ``x.nii.gz`` / ``x.nii``; None for other files."""
    image_path = Path(image_path)
    for suffix in (".nii.gz", ".nii"):
        if image_path.name.lower().endswith(suffix):
            return image_path.with_name(image_path.name[: -len(suffix)] + ".json")
    return None


def super_resolution_record(
    model: dict,
    factors: Sequence,
    in_shape: Sequence[int],
    out_shape: Sequence[int],
    in_zooms: Sequence[float] | None = None,
    out_zooms: Sequence[float] | None = None,
    dtype: str = "float32",
    adapt: int = 0,
    ensemble: bool = False,
) -> dict:
    """What was done to one image: tool, model, exact factors per voxel axis (``"7/3"``),
    grids before and after, the updates of adaptation to the image (the model's file
    alone then does not reproduce the output) and whether a self-ensemble was used."""
    from fractions import Fraction

    from metasrgan import __version__

    record = {
        "Tool": "metasrgan",
        "Version": __version__,
        "Model": model,
        "Factors": [str(Fraction(f).limit_denominator(1000)) for f in factors],
        "InputShape": [int(n) for n in in_shape],
        "OutputShape": [int(n) for n in out_shape],
    }
    if in_zooms is not None and out_zooms is not None:
        record["InputVoxelSize"] = [round(float(z), 6) for z in in_zooms]
        record["OutputVoxelSize"] = [round(float(z), 6) for z in out_zooms]
    record["OutputDataType"] = dtype
    if adapt:
        record["AdaptationUpdates"] = int(adapt)
    if ensemble:
        record["SelfEnsemble"] = True
    return record


def sidecar_content(
    record: dict, sources: Sequence[str], inherited: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The sidecar: the input's own sidecar fields, then ``Sources`` and ``SuperResolution``."""
    content = dict(inherited or {})
    content.pop("ReconMatrixPE", None)  # the reconstruction matrix is no longer the grid
    content["Sources"] = list(sources)
    content["SuperResolution"] = record
    return content


def write_sidecar(path: str | os.PathLike, content: dict[str, Any]) -> Path:
    """Write a JSON sidecar atomically."""
    from metasrgan.atomic import atomic_write

    text = json.dumps(content, indent=2) + "\n"
    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path
