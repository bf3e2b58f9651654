"""Property tests over header fields: a NIfTI or PNG file either reads correctly or raises
:class:`ImageReadError`, never another exception (bounded: 50 examples each).

The files are real data (a crop of the bundled MNI152 slab, a slice of it as PNG) with
the header fields drawn by hypothesis: dimensions, voxel sizes, affines, data types,
offsets, compression; bit depths, colour types, sizes and truncation for PNG.
"""

from __future__ import annotations

import gzip
import struct
import tempfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metasrgan.data.io import ImageReadError, read_image
from metasrgan.samples_path import sample_path

FUZZ = settings(  # derandomized and no example database: the same 50 cases, nothing written
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LIMIT = 20_000  # voxels: huge declared sizes are refused quickly

_SLAB = np.asarray(nib.load(sample_path("mni152_val")).dataobj)
CROP = np.ascontiguousarray(_SLAB[60:72, 70:80, :4]).astype(np.int16)  # 12x10x4 real MRI

ODD_FLOATS = st.sampled_from(
    [0.0, 1.0, -1.0, 0.5, 2.0, 1e-12, 1e12, float("nan"), float("inf"), -float("inf")]
)
NIFTI_CODES = [2, 4, 8, 16, 64, 256, 512, 768, 1024, 1280]  # the scalar types
SOME_CODES = st.sampled_from([*NIFTI_CODES, 0, 1, 32, 128, 1792, 2304, 9999, -3])


def _check_result(image, ndim_limit=3) -> None:
    """What a successful read promises."""
    assert image.array.dtype == np.float32 and 2 <= image.array.ndim <= ndim_limit
    assert np.isfinite(image.array).all()
    assert all(np.isfinite(s) and s > 0 for s in image.spacing)
    if image.affine is not None:
        used = np.asarray(image.affine)[:3, : min(image.array.ndim, 3)]
        assert np.isfinite(image.affine).all()
        assert np.linalg.matrix_rank(used) == used.shape[1]


@st.composite
def nifti_headers(draw):
    fields = {}
    if draw(st.booleans()):
        ndim = draw(st.integers(-2, 9))
        sizes = draw(st.lists(st.sampled_from([-1, 0, 1, 2, 4, 10, 12, 3000]), min_size=7,
                              max_size=7))  # fmt: skip
        fields["dim"] = (ndim, *sizes)
    if draw(st.booleans()):
        fields["pixdim"] = tuple(draw(st.lists(ODD_FLOATS, min_size=8, max_size=8)))
    if draw(st.booleans()):
        fields["datatype"] = draw(SOME_CODES)
    if draw(st.booleans()):
        fields["sform_code"] = draw(st.integers(0, 5))
        fields["qform_code"] = draw(st.integers(0, 5))
    if draw(st.booleans()):
        for row in ("srow_x", "srow_y", "srow_z"):
            fields[row] = tuple(draw(st.lists(ODD_FLOATS, min_size=4, max_size=4)))
    if draw(st.booleans()):
        fields["quatern"] = tuple(draw(st.lists(ODD_FLOATS, min_size=6, max_size=6)))
    if draw(st.booleans()):
        fields["vox_offset"] = draw(st.sampled_from([0.0, 348.0, 352.0, 356.0, 1e9, -1.0]))
    return fields, draw(st.booleans()), draw(st.sampled_from([None, 10, 200]))


OFFSETS = {"dim": (40, "8h"), "datatype": (70, "h"), "pixdim": (76, "8f"),
           "vox_offset": (108, "f"), "qform_code": (252, "h"), "sform_code": (254, "h"),
           "quatern": (256, "6f"), "srow_x": (280, "4f"), "srow_y": (296, "4f"),
           "srow_z": (312, "4f")}  # fmt: skip


def _nifti(fields: dict) -> bytes:
    affine = np.diag([1.0, 1.2, 3.0, 1.0])
    img = nib.Nifti1Image(CROP, affine)
    img.header.set_sform(affine, code=1)
    img.header.set_qform(affine, code=1)
    raw = bytearray(img.to_bytes())
    for name, value in fields.items():
        offset, fmt = OFFSETS[name]
        values = [int(v) for v in value] if fmt.endswith("h") and name == "dim" else value
        if fmt.endswith("h"):
            values = [max(-32768, min(32767, int(v))) for v in np.atleast_1d(values)]
        struct.pack_into("<" + fmt, raw, offset, *np.atleast_1d(values).tolist())
    return bytes(raw)


@FUZZ
@given(nifti_headers())
def test_nifti_header_fields_read_or_fail_clearly(case):
    fields, compressed, cut = case
    data = _nifti(fields)
    if cut is not None:
        data = data[: len(data) - cut]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("x.nii.gz" if compressed else "x.nii")
        path.write_bytes(gzip.compress(data) if compressed else data)
        try:
            image = read_image(path, max_voxels=LIMIT)
        except ImageReadError as err:
            assert str(path) in str(err)
            return
        _check_result(image)
        if not fields and cut is None:  # untouched: the exact voxels and geometry
            np.testing.assert_array_equal(image.array, CROP.astype(np.float32))
            assert image.spacing == pytest.approx((1.0, 1.2, 3.0))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@st.composite
def png_files(draw):
    width = draw(st.sampled_from([0, 1, 7, 10, 300, 2**31 - 1]))
    height = draw(st.sampled_from([0, 1, 12, 200, 2**31 - 1]))
    depth = draw(st.sampled_from([1, 2, 4, 8, 16, 3, 0]))
    colour = draw(st.sampled_from([0, 2, 3, 4, 6, 1, 7]))
    interlace = draw(st.sampled_from([0, 1, 2]))
    body = draw(st.sampled_from(["slice", "short", "noise", "none"]))
    cut = draw(st.sampled_from([0, 0, 5, 30]))
    return width, height, depth, colour, interlace, body, cut


def _png(width, height, depth, colour, interlace, body, seed) -> bytes:
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1)
    row_bytes = (min(width, 4096) * channels * max(depth, 1) + 7) // 8
    rows = min(height, 4096)
    pixels = np.resize(_SLAB[:, :, 5].astype(np.uint8).ravel(), rows * row_bytes).reshape(
        rows, row_bytes
    )
    raw = b"".join(b"\0" + r.tobytes() for r in pixels)
    if body == "short":
        raw = raw[: len(raw) // 3]
    idat = {"none": b"", "noise": np.random.default_rng(seed).bytes(64)}.get(body)
    if idat is None:
        idat = zlib.compress(raw)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    chunks = [_png_chunk(b"IHDR", ihdr)]
    if colour == 3:
        chunks.append(_png_chunk(b"PLTE", bytes(range(256)) * 3))
    chunks += [_png_chunk(b"IDAT", idat), _png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


@FUZZ
@given(png_files())
def test_png_header_fields_read_or_fail_clearly(case):
    width, height, depth, colour, interlace, body, cut = case
    data = _png(width, height, depth, colour, interlace, body, seed=width + height)
    if cut:
        data = data[:-cut]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.png"
        path.write_bytes(data)
        try:
            image = read_image(path, max_voxels=LIMIT)
        except ImageReadError as err:
            assert str(path) in str(err)
            return
        _check_result(image)
        assert image.shape == (height, width)


DICOM_FIELDS = {
    "ImageOrientationPatient": st.lists(ODD_FLOATS, min_size=0, max_size=7),
    "ImagePositionPatient": st.lists(ODD_FLOATS, min_size=0, max_size=4),
    "PixelSpacing": st.lists(ODD_FLOATS, min_size=0, max_size=3),
    "SliceThickness": ODD_FLOATS,
    "RescaleSlope": ODD_FLOATS,
    "Rows": st.sampled_from([0, 1, 8, 9, 65535]),
    "Columns": st.sampled_from([0, 1, 8, 9, 65535]),
    "BitsAllocated": st.sampled_from([0, 1, 8, 12, 16, 32]),
    "NumberOfFrames": st.sampled_from([0, 1, 3, 100]),
    "PhotometricInterpretation": st.sampled_from(["MONOCHROME1", "RGB", "PALETTE COLOR", "?"]),
}


@st.composite
def dicom_changes(draw):
    names = draw(st.lists(st.sampled_from(sorted(DICOM_FIELDS)), max_size=3, unique=True))
    changes = {name: draw(DICOM_FIELDS[name]) for name in names}
    return changes, draw(st.sampled_from(["all", "first"])), draw(st.sampled_from([0, 0, 40]))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the odd values
@FUZZ
@given(dicom_changes())
def test_dicom_header_fields_read_or_fail_clearly(case):
    """A 3-slice series of real MRI with up to three header fields changed."""
    import pydicom
    from fixtures.mri_layouts import real_volume, write_dicom_series
    from hypothesis import assume

    changes, which, cut = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        paths = write_dicom_series(folder, real_volume((8, 8, 3)), shuffle=False)
        for path in paths if which == "all" else paths[:1]:
            ds = pydicom.dcmread(path)
            try:
                for name, value in changes.items():
                    setattr(ds, name, value)
                ds.save_as(path)
            except (ValueError, TypeError, OverflowError):
                assume(False)  # pydicom refuses to write this value: nothing to read
            if cut:
                path.write_bytes(path.read_bytes()[:-cut])
        try:
            image = read_image(folder, max_voxels=LIMIT)
        except ImageReadError as err:
            assert str(folder) in str(err)
            return
        _check_result(image)
