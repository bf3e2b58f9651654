"""Readers and writers on the bundled real MRI and on fixtures written in real formats."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fixtures.mri_layouts import (
    real_volume,
    write_dicom_series,
    write_enhanced_dicom,
    write_nifti,
)

from metasrgan.data.io import (
    ImageReadError,
    ImageWriteError,
    MRImage,
    find_images,
    read_image,
    write_image,
)
from metasrgan.samples_path import SAMPLES, sample_path


@pytest.mark.parametrize("name", SAMPLES)
def test_bundled_samples_read_with_their_geometry(name):
    path = sample_path(name)
    image = read_image(path)
    ref = nib.load(path)
    assert image.array.dtype == np.float32
    assert image.array.shape == ref.shape
    np.testing.assert_array_equal(image.array, ref.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(image.affine, ref.affine)
    assert image.spacing == pytest.approx(ref.header.get_zooms())
    assert image.header is not None and image.path == path


def _oblique_affine() -> np.ndarray:
    theta = 0.3
    rot = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.5, 0.7, 2.0])
    affine[:3, 3] = [-30.0, 12.5, 7.0]
    return affine


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_round_trip_keeps_affine_zooms_and_codes(tmp_path, suffix):
    vol = real_volume()
    src = write_nifti(tmp_path / f"in{suffix}", vol.astype(np.int16), _oblique_affine())
    header = nib.load(src).header
    header.set_sform(_oblique_affine(), code=4)  # MNI space
    image = read_image(src)
    image.header = header
    out = write_image(tmp_path / f"out{suffix}", image)
    back = nib.load(out)
    assert back.get_data_dtype() == np.float32
    np.testing.assert_array_equal(back.get_fdata(dtype=np.float32), vol)
    np.testing.assert_allclose(back.affine, _oblique_affine(), atol=1e-6)
    np.testing.assert_allclose(back.header.get_zooms(), [0.5, 0.7, 2.0], atol=1e-6)
    assert int(back.header["sform_code"]) == 4 and int(back.header["qform_code"]) == 1
    if suffix == ".nii.gz":
        assert gzip.decompress(out.read_bytes())[344:348] == b"n+1\0"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"in{suffix}", f"out{suffix}"])


def test_spacing_defaults_to_the_affine_columns():
    image = MRImage(np.zeros((3, 4, 5), np.float32), _oblique_affine())
    assert image.spacing == pytest.approx((0.5, 0.7, 2.0))
    assert MRImage(np.zeros((3, 4), np.float32)).spacing == (1.0, 1.0)


def test_4d_volumes_are_refused_unless_allowed(tmp_path):
    vol4 = np.stack([real_volume(), real_volume(seed=1)], axis=-1)
    path = write_nifti(tmp_path / "bold.nii.gz", vol4)
    with pytest.raises(ImageReadError, match="bold.nii.gz.*4D"):
        read_image(path)
    assert read_image(path, allow_4d=True).array.shape == vol4.shape
    single = write_nifti(tmp_path / "one.nii.gz", real_volume()[..., None])
    assert read_image(single).array.shape == (24, 24, 10)


def test_dicom_series_is_sorted_rescaled_and_placed(tmp_path):
    vol = real_volume((12, 16, 6)) * 2.0 - 5.0  # stored as (vol + 5) / 2: exact integers
    folder = tmp_path / "series"
    write_dicom_series(folder, vol, spacing=(0.9, 0.8, 2.5), origin=(-10.0, 20.0, 30.0))
    (folder / "notes.txt").write_text("not a DICOM file")
    image = read_image(folder)
    assert image.array.shape == (12, 16, 6)
    np.testing.assert_allclose(image.array, vol)
    assert image.spacing == pytest.approx((0.9, 0.8, 2.5))
    i, j, k = 3, 5, 4  # RAS = LPS with x, y negated
    expected = [-(-10.0 + i * 0.9), -(20.0 + j * 0.8), 30.0 + k * 2.5]
    np.testing.assert_allclose((image.affine @ [i, j, k, 1])[:3], expected, atol=1e-6)
    assert find_images(tmp_path) == [folder]


def test_pydicom_sample_file_reads_as_2d(tmp_path):
    import pydicom
    from pydicom import dcmread

    # the file bundled in pydicom's wheel (get_testdata_file would try to download others)
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"
    if not path.is_file():
        pytest.skip("pydicom's bundled MR_small.dcm is missing")
    ds = dcmread(path)
    image = read_image(path)
    expected = ds.pixel_array.T * float(getattr(ds, "RescaleSlope", 1)) + float(
        getattr(ds, "RescaleIntercept", 0)
    )
    np.testing.assert_allclose(image.array, expected)
    assert image.spacing == pytest.approx([float(v) for v in ds.PixelSpacing][::-1])
    np.testing.assert_allclose(
        image.affine[:3, 3],
        [-v for v in ds.ImagePositionPatient[:2]] + [ds.ImagePositionPatient[2]],
    )


def test_dicom_folder_problems_are_named(tmp_path):
    vol = real_volume((8, 8, 3))
    mixed = tmp_path / "mixed"
    write_dicom_series(mixed / "a", vol)
    write_dicom_series(mixed / "b", vol)
    for f in (mixed / "b").iterdir():
        f.rename(mixed / f"b_{f.name}")
    for f in (mixed / "a").iterdir():
        f.rename(mixed / f"a_{f.name}")
    with pytest.raises(ImageReadError, match="mixed.*2 DICOM series"):
        read_image(mixed)
    dup = tmp_path / "dup"
    write_dicom_series(dup / "x", vol, series_uid="1.2.3.4")
    write_dicom_series(dup / "y", vol, series_uid="1.2.3.4")
    for sub in ("x", "y"):
        for f in (dup / sub).iterdir():
            f.rename(dup / f"{sub}{f.name}")
    with pytest.raises(ImageReadError, match="share one position"):
        read_image(dup)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ImageReadError, match="empty.*no DICOM"):
        read_image(empty)


def test_plain_images_rgb_to_luminance_and_16_bit(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    image = read_image(tmp_path / "rgb.png")
    assert image.affine is None and image.array.shape == (10, 12)
    np.testing.assert_allclose(image.array, rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-3)
    assert image.source_dtype == "uint8"
    gray16 = rng.integers(0, 65536, (10, 12)).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    image16 = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(image16.array, gray16)
    assert image16.source_dtype == "uint16"
    Image.fromarray(rgb, "RGB").save(tmp_path / "photo.jpg", quality=95)
    assert read_image(tmp_path / "photo.jpg").array.shape == (10, 12)


def test_plain_writers(tmp_path):
    unit = np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)
    write_image(tmp_path / "u8.png", MRImage(unit))
    np.testing.assert_array_equal(read_image(tmp_path / "u8.png").array, np.round(unit * 255))
    write_image(tmp_path / "u16.png", MRImage(unit), bits=16)
    np.testing.assert_array_equal(read_image(tmp_path / "u16.png").array, np.round(unit * 65535))
    scan = unit * 1234.5 - 10
    write_image(tmp_path / "f.tif", MRImage(scan))
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif").array, scan)
    write_image(tmp_path / "a.npy", MRImage(scan))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), scan)
    with pytest.raises(ImageWriteError, match="vol.png.*2D"):
        write_image(tmp_path / "vol.png", MRImage(np.zeros((2, 3, 4), np.float32)))
    with pytest.raises(ImageWriteError, match="NIfTI"):
        write_image(tmp_path / "x.dcm", MRImage(unit))
    with pytest.raises(ImageWriteError, match="unsupported"):
        write_image(tmp_path / "x.bmp", MRImage(unit))


def _truncated_nifti(tmp_path):
    path = write_nifti(tmp_path / "cut.nii.gz", real_volume())
    path.write_bytes(path.read_bytes()[:200])
    return path


def _truncated_png(tmp_path):
    from PIL import Image

    path = tmp_path / "cut.png"
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)).save(path)
    path.write_bytes(path.read_bytes()[:100])
    return path


def _write(name, data):
    def make(tmp_path):
        path = tmp_path / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            np.save(path, data)
        return path

    return make


BAD_INPUTS = [
    (_truncated_nifti, "cut.nii.gz.*truncated"),
    (_write("junk.nii", b"this is not a nifti header" * 20), "junk.nii.*not a NIfTI file"),
    (_truncated_png, "cut.png.*truncated"),
    (_write("junk.dcm", b"\0" * 10), "junk.dcm"),
    (_write("nan.npy", np.array([[1.0, np.nan], [2.0, 3.0]])), "nan.npy.*NaN or Inf"),
    (_write("inf.npy", np.array([[1.0, np.inf], [2.0, 3.0]])), "inf.npy.*NaN or Inf"),
    (_write("flat.npy", np.full((4, 4), 7.0)), "flat.npy.*constant"),
    (_write("empty.npy", np.zeros((0, 4))), "empty.npy.*empty"),
    (_write("line.npy", np.arange(5.0)), "line.npy.*1D array.*not allowed"),
    (_write("text.npy", np.array([["a", "b"]])), "text.npy.*numeric"),
    (_write("notes.txt", b"hello"), "notes.txt.*unsupported file type"),
]


@pytest.mark.parametrize("make, message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_inputs_raise_errors_naming_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ImageReadError, match=message):
        read_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="nowhere.nii.gz.*no such file"):
        read_image(tmp_path / "nowhere.nii.gz")


def test_find_images_sorted_series_once_hidden_skipped(tmp_path):
    write_dicom_series(tmp_path / "b_series", real_volume((6, 6, 3)))
    np.save(tmp_path / "c.npy", np.eye(3))
    write_nifti(tmp_path / "sub" / "a.nii.gz", real_volume())
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "readme.md").write_text("x")
    assert find_images(tmp_path) == [
        tmp_path / "b_series",
        tmp_path / "c.npy",
        tmp_path / "sub" / "a.nii.gz",
    ]
    assert find_images(tmp_path / "c.npy") == [tmp_path / "c.npy"]


@pytest.mark.parametrize("cut", [400, -300])
def test_a_truncated_file_inside_a_series_is_an_error_not_a_shorter_volume(tmp_path, cut):
    paths = write_dicom_series(tmp_path / "s", real_volume((16, 16, 4)), shuffle=False)
    paths[2].write_bytes(paths[2].read_bytes()[:cut])
    with pytest.raises(ImageReadError, match="IM0002.dcm"):
        read_image(tmp_path / "s")


def test_non_image_objects_beside_a_series_are_stepped_over(tmp_path):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    vol = real_volume((8, 8, 3))
    write_dicom_series(tmp_path / "s", vol, slope=1.0, intercept=0.0)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report = FileDataset(
        str(tmp_path / "s" / "report.dcm"), {}, file_meta=meta, preamble=b"\0" * 128
    )
    report.SOPClassUID = meta.MediaStorageSOPClassUID
    report.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    report.SeriesInstanceUID = generate_uid()
    report.Modality = "SR"
    report.save_as(str(tmp_path / "s" / "report.dcm"), enforce_file_format=True)
    np.testing.assert_allclose(read_image(tmp_path / "s").array, vol)


def test_enhanced_multiframe_dicom_matches_the_same_series(tmp_path):
    vol = real_volume((12, 16, 5)) * 2.0 - 5.0
    write_dicom_series(tmp_path / "series", vol)
    enhanced = write_enhanced_dicom(tmp_path / "enhanced.dcm", vol)
    a, b = read_image(tmp_path / "series"), read_image(enhanced)
    np.testing.assert_allclose(b.array, vol)
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-9)
    assert b.spacing == pytest.approx(a.spacing)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_one_slice_volumes_keep_their_geometry_along_any_axis(tmp_path, axis):
    shape = [16, 16, 16]
    shape[axis] = 1
    vol = real_volume((16, 16, 16))[tuple(slice(8, 9) if n == 1 else slice(None) for n in shape)]
    zooms = [1.0, 1.0, 1.0]
    zooms[axis] = 3.0
    path = write_nifti(tmp_path / "slab.nii.gz", vol, np.diag([*zooms, 1.0]))
    image = read_image(path)
    assert image.shape == tuple(shape)
    assert image.spacing == pytest.approx(tuple(zooms))
    np.testing.assert_allclose(image.affine, np.diag([*zooms, 1.0]))


def test_reading_is_refused_for_things_that_are_not_files(tmp_path):
    (tmp_path / "scan.nii.gz").mkdir()
    with pytest.raises(ImageReadError, match="scan.nii.gz: is a folder, not a file"):
        read_image(tmp_path / "scan.nii.gz")
    link = tmp_path / "device.nii"
    link.symlink_to("/dev/zero")  # reading it would never end
    with pytest.raises(ImageReadError, match="device.nii: not a regular file"):
        read_image(link)


def test_find_images_never_opens_a_fifo(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe")  # no extension: looked at for the DICOM preamble
    np.save(tmp_path / "a.npy", np.eye(3))
    assert find_images(tmp_path) == [tmp_path / "a.npy"]
