"""Header propagation and sidecars of derived images: one round trip per header field.

Each test writes a derived image of a real scan (nibabel's EPI, bundled) to a file with
:func:`metasrgan.headers.write_nifti`, reads it back with nibabel, and checks one field.
"""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from metasrgan.headers import (
    DESCRIP_BYTES,
    derived_image,
    extend_descrip,
    model_record,
    sidecar_content,
    sidecar_path,
    super_resolution_record,
    write_nifti,
    write_sidecar,
)
from metasrgan.samples_path import sample_path
from metasrgan.volume import scaled_affine


@pytest.fixture
def source():
    """The bundled EPI with every propagated field set to something recognisable."""
    img = nib.load(sample_path("epi_nibabel"))
    hdr = img.header.copy()
    hdr.set_intent("t test", (12.0,), name="tstat")
    hdr["aux_file"] = b"colours.lut"
    hdr["descrip"] = b"FSL5.0"
    hdr.set_xyzt_units("mm", "msec")
    hdr.set_dim_info(freq=0, phase=1, slice=2)
    hdr["cal_min"], hdr["cal_max"] = 0.0, 10.0
    hdr.set_qform(img.affine, code=1)
    hdr.set_sform(img.affine, code=4)
    data = np.asarray(img.dataobj, dtype=np.float32)[:32, :32, :4]
    return data, img.affine, hdr


def _round_trip(tmp_path, source, name="out.nii.gz", **kwargs):
    data, affine, hdr = source
    out = np.repeat(np.repeat(data, 2, axis=0), 2, axis=1) * 1.25 + 0.5  # values change too
    new_affine = scaled_affine(affine, (2.0, 2.0, 1.0))
    img = derived_image(out, new_affine, hdr, "metasrgan 0.1.0 x2,2,1", **kwargs)
    path = write_nifti(tmp_path / name, img)
    return out, new_affine, nib.load(path)


def test_intent_is_kept(tmp_path, source):
    _, _, back = _round_trip(tmp_path, source)
    assert back.header.get_intent() == ("t test", (12.0,), "tstat")


def test_xyzt_units_are_kept(tmp_path, source):
    _, _, back = _round_trip(tmp_path, source)
    assert back.header.get_xyzt_units() == ("mm", "msec")


def test_unknown_spatial_units_become_mm(tmp_path, source):
    data, affine, hdr = source
    hdr.set_xyzt_units("unknown", "unknown")
    _, _, back = _round_trip(tmp_path, (data, affine, hdr))
    assert back.header.get_xyzt_units()[0] == "mm"


def test_aux_file_is_kept(tmp_path, source):
    _, _, back = _round_trip(tmp_path, source)
    assert back.header["aux_file"].item() == b"colours.lut"


def test_dim_info_is_kept(tmp_path, source):
    _, _, back = _round_trip(tmp_path, source)
    assert back.header.get_dim_info() == (0, 1, 2)


def test_descrip_is_extended_with_what_was_done(tmp_path, source):
    _, _, back = _round_trip(tmp_path, source)
    assert back.header["descrip"].item() == b"FSL5.0; metasrgan 0.1.0 x2,2,1"


def test_long_descrip_is_shortened_but_what_was_done_stays():
    long = b"x" * 80
    text = extend_descrip(long, "metasrgan 0.1.0 x2.5")
    assert len(text) <= DESCRIP_BYTES
    assert text.endswith(b"; metasrgan 0.1.0 x2.5") and text.startswith(b"xxx")
    assert extend_descrip(b"", "done") == b"done"


def test_cal_min_max_are_recomputed(tmp_path, source):
    out, _, back = _round_trip(tmp_path, source)
    assert back.header["cal_min"] == pytest.approx(float(out.min()))
    assert back.header["cal_max"] == pytest.approx(float(out.max()))
    assert back.header["cal_max"] != 10.0  # the source's display range is not kept


def test_qform_and_sform_codes_are_copied(tmp_path, source):
    _, new_affine, back = _round_trip(tmp_path, source)
    assert int(back.header["qform_code"]) == 1 and int(back.header["sform_code"]) == 4
    np.testing.assert_allclose(back.affine, new_affine, atol=1e-5)
    np.testing.assert_allclose(back.header.get_zooms()[:3], (1.0, 1.0, 2.2), atol=1e-5)


def test_dicom_series_get_codes_1_1_as_dcm2niix_writes(tmp_path, source):
    data, affine, _ = source
    img = derived_image(data, affine, None, "done", from_dicom=True)
    back = nib.load(write_nifti(tmp_path / "dicom.nii.gz", img))
    assert (int(back.header["qform_code"]), int(back.header["sform_code"])) == (1, 1)


def test_no_codes_in_the_source_means_aligned_sform(tmp_path, source):
    data, affine, hdr = source
    hdr.set_qform(None, code=0)
    hdr.set_sform(None, code=0)
    img = derived_image(data, affine, hdr, "done")
    back = nib.load(write_nifti(tmp_path / "nocodes.nii", img))
    assert (int(back.header["qform_code"]), int(back.header["sform_code"])) == (0, 2)


def test_float32_is_stored_unscaled(tmp_path, source):
    out, _, back = _round_trip(tmp_path, source)
    assert back.get_data_dtype() == np.float32
    assert back.dataobj.slope == 1.0 and back.dataobj.inter == 0.0
    np.testing.assert_array_equal(back.get_fdata(dtype=np.float32), out)


def test_int16_is_scaled_to_within_half_a_step(tmp_path, source):
    out, _, back = _round_trip(tmp_path, source, dtype="int16")
    assert back.get_data_dtype() == np.int16
    slope = float(back.dataobj.slope)
    assert slope != 1.0  # non-integer values: a real scaling was chosen
    error = np.abs(back.get_fdata() - out).max()
    assert error <= slope / 2 + 1e-6
    assert (tmp_path / "out.nii.gz").stat().st_size > 0


def test_same_dtype_is_the_inputs(tmp_path, source):
    data, affine, hdr = source
    hdr.set_data_dtype(np.uint8)
    out, _, back = _round_trip(tmp_path, (data, affine, hdr), dtype="same")
    assert back.get_data_dtype() == np.uint8
    slope, inter = float(back.dataobj.slope), float(back.dataobj.inter)
    assert np.abs(back.get_fdata() - out).max() <= slope / 2 + 1e-6
    assert out.min() >= inter - 1e-6


def test_int16_file_is_smaller_than_float32(tmp_path, source):
    _round_trip(tmp_path, source, name="f.nii")
    _round_trip(tmp_path, source, name="i.nii", dtype="int16")
    assert (tmp_path / "i.nii").stat().st_size < 0.6 * (tmp_path / "f.nii").stat().st_size


def test_bad_dtype_and_non_finite_values_are_errors(source):
    data, affine, hdr = source
    with pytest.raises(ValueError, match="--dtype"):
        derived_image(data, affine, hdr, "done", dtype="float16")
    bad = data.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        derived_image(bad, affine, hdr, "done")


def test_2d_images_get_headers_too(tmp_path, source):
    data, affine, hdr = source
    img = derived_image(data[:, :, 0], affine, hdr, "done")
    back = nib.load(write_nifti(tmp_path / "slice.nii.gz", img))
    assert back.shape == data.shape[:2]
    assert back.header["aux_file"].item() == b"colours.lut"


def test_same_image_gives_the_same_bytes(tmp_path, source):
    """gzip without a timestamp: reruns and parallel jobs write identical files."""
    _round_trip(tmp_path, source, name="a.nii.gz")
    _round_trip(tmp_path, source, name="b.nii.gz")
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()


# ---------------------------------------------------------------------------- sidecars


def test_model_record_has_the_files_sha256(tmp_path):
    from metasrgan.inference import shipped_model_path

    path = shipped_model_path()
    record = model_record(path, {"name": "metasrgan-mri"})
    assert record["SHA256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["File"] == path.name and record["Name"] == "metasrgan-mri"
    assert model_record(None)["Untrained"] is True


def test_sidecar_written_atomically_with_inherited_fields(tmp_path):
    record = super_resolution_record(
        {"Name": "m", "SHA256": "ab"}, (2, 2, 1), (4, 4, 3), (8, 8, 3), (1, 1, 1), (0.5, 0.5, 1)
    )
    content = sidecar_content(record, ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"],
                              {"EchoTime": 0.003, "ReconMatrixPE": 256})  # fmt: skip
    side = sidecar_path(tmp_path / "sub-01_desc-superres_T1w.nii.gz")
    assert side.name == "sub-01_desc-superres_T1w.json"
    write_sidecar(side, content)
    back = json.loads(side.read_text())
    assert back["EchoTime"] == 0.003 and "ReconMatrixPE" not in back
    assert back["SuperResolution"]["Factors"] == ["2", "2", "1"]
    assert back["SuperResolution"]["Model"]["SHA256"] == "ab"
    assert sorted(p.name for p in tmp_path.iterdir()) == [side.name]  # no temporary file
    assert sidecar_path(tmp_path / "x.png") is None


# ---------------------------------------------------------------------------- write path


def test_upscale_writes_derived_headers_dtype_and_sidecar_for_2d(tmp_path):
    """``metasrgan upscale --dtype int16`` on the bundled one-slice clinical MR (2D): clean
    k-space, so the default adapts to it first and the sidecar says so."""
    from metasrgan.adapt import AUTO_STEPS
    from metasrgan.cli import main
    from metasrgan.inference import shipped_model_path

    out = tmp_path / "slice_x2.nii.gz"
    src = sample_path("mr_small_pydicom")
    assert main(["upscale", str(src), "--scale", "2", "-o", str(out), "--dtype", "int16",
                 "--no-progress", "-q"]) == 0  # fmt: skip
    back = nib.load(out)
    assert back.shape == (128, 128, 1) and back.get_data_dtype() == np.int16
    assert back.header["descrip"].item() == b"metasrgan 0.1.0 x2,2,1"
    assert back.header["cal_max"] == pytest.approx(back.get_fdata().max(), rel=1e-4)
    side = json.loads(out.with_name("slice_x2.json").read_text())
    sha = hashlib.sha256(shipped_model_path().read_bytes()).hexdigest()
    assert side["SuperResolution"]["Model"]["SHA256"] == sha
    assert side["SuperResolution"]["OutputDataType"] == "int16"
    assert side["SuperResolution"]["AdaptationUpdates"] == AUTO_STEPS


def test_upscaled_dicom_series_gets_codes_1_1(tmp_path):
    from fixtures.mri_layouts import real_volume, write_dicom_series

    from metasrgan.cli import main

    series = tmp_path / "series"
    write_dicom_series(series, real_volume((24, 24, 4)))
    out = tmp_path / "dicom_x2.nii.gz"
    assert main(["upscale", str(series), "--scale", "2", "-o", str(out), "--no-progress",
                 "-q"]) == 0  # fmt: skip
    back = nib.load(out)
    assert (int(back.header["qform_code"]), int(back.header["sform_code"])) == (1, 1)
    assert json.loads(out.with_name("dicom_x2.json").read_text())["Sources"] == [str(series)]
