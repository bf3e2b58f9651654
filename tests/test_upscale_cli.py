"""`metasrgan upscale` in-process on real MRI crops: files, volumes, folders, failures."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from metasrgan.checkpoint import save_model
from metasrgan.cli import main
from metasrgan.registry import make
from metasrgan.samples_path import sample_path
from metasrgan.volume import spacing_of


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny model file (untrained: the command's plumbing is under test, not quality)."""
    torch.manual_seed(0)
    model = make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1, "norm": "none",
                                                 "skip": "bicubic"}})  # fmt: skip
    return save_model(model, tmp_path_factory.mktemp("m") / "tiny.safetensors")


@pytest.fixture(scope="module")
def colin():
    img = nib.load(sample_path("colin27_val"))
    return img.get_fdata(dtype=np.float32)[60:110, 70:120, 3:7], img.affine


def _nifti(path, data, affine):
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=2)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))
    return path


def test_nifti_volume_in_plane(tmp_path, model_file, colin):
    data, affine = colin
    src = _nifti(tmp_path / "sub-01_T1w.nii.gz", data, affine)
    out = tmp_path / "out" / "sub-01_T1w_metasrgan.nii.gz"
    code = main(["upscale", str(src), "--scale", "2", "-o", str(out), "--model", str(model_file),
                 "--no-progress"])  # fmt: skip
    assert code == 0
    img = nib.load(out)
    assert img.shape == (100, 100, 4)
    np.testing.assert_allclose(spacing_of(img.affine), [0.5, 0.5, 1.0], atol=1e-6)
    assert int(img.header["sform_code"]) == 2 and int(img.header["qform_code"]) == 1
    result = img.get_fdata()
    assert abs(result.mean() - data.mean()) < 0.05 * data.mean()  # the input's units
    side = json.loads((tmp_path / "out" / "sub-01_T1w_metasrgan.json").read_text())
    assert side["SuperResolution"]["Factors"] == ["2", "2", "1"]


def test_thick_slices_to_target_spacing(tmp_path, model_file, colin):
    data, affine = colin
    thick = affine @ np.diag([1.0, 1.0, 4.0, 1.0])
    src = _nifti(tmp_path / "thick.nii.gz", data, thick)
    out = tmp_path / "iso.nii.gz"
    assert main(["upscale", str(src), "--spacing", "1", "-o", str(out), "--model",
                 str(model_file), "--no-progress"]) == 0  # fmt: skip
    img = nib.load(out)
    assert img.shape == (50, 50, 16)
    np.testing.assert_allclose(spacing_of(img.affine), [1, 1, 1], atol=1e-6)


def test_npy_2d_round_trip_keeps_units(tmp_path, model_file, colin):
    data, _ = colin
    src = tmp_path / "slice.npy"
    np.save(src, data[:, :, 0] * 3.0 + 100.0)
    out = tmp_path / "slice_up.npy"
    assert main(["upscale", str(src), "--scale", "2.5", "-o", str(out),
                 "--model", str(model_file)]) == 0  # fmt: skip
    result = np.load(out)
    assert result.shape == (125, 125) and result.dtype == np.float32
    assert abs(result.mean() - np.load(src).mean()) < 0.05 * np.load(src).mean()
    out2 = tmp_path / "sized.npy"
    assert main(["upscale", str(src), "--size", "70x90", "-o", str(out2),
                 "--model", str(model_file)]) == 0  # fmt: skip
    assert np.load(out2).shape == (70, 90)


def test_folder_reports_a_bad_file_and_runs_the_rest(tmp_path, model_file, colin, capsys):
    data, affine = colin
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", data[:, :, 0])
    _nifti(folder / "b.nii.gz", data, affine)
    (folder / "broken.nii.gz").write_bytes(b"not a nifti at all")
    out = tmp_path / "out"
    code = main(["upscale", str(folder), "--scale", "1.5", "-o", str(out), "--model",
                 str(model_file), "--no-progress"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.nii.gz" in err and "1 of 3" in err
    assert (out / "a.npy").is_file() and (out / "b.nii.gz").is_file()
    assert not (out / "broken.nii.gz").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial temp files


def test_bad_requests_fail_clearly(tmp_path, model_file, colin, capsys):
    data, affine = colin
    src = _nifti(tmp_path / "v.nii.gz", data, affine)
    assert main(["upscale", str(src), "--size", "10x10", "-o", str(tmp_path / "o.nii.gz"),
                 "--model", str(model_file)]) == 2  # fmt: skip
    assert "--size applies to 2D" in capsys.readouterr().err
    four_d = _nifti(tmp_path / "bold.nii.gz", np.stack([data, data], -1), affine)
    assert main(["upscale", str(four_d), "--scale", "2", "-o", str(tmp_path / "o2.nii.gz"),
                 "--model", str(model_file)]) == 1  # fmt: skip
    assert "4D" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "missing.nii.gz"), "--scale", "2", "-o", "x.nii.gz",
                 "--model", str(model_file)]) == 2  # fmt: skip
    assert not (tmp_path / "o.nii.gz").exists() and not (tmp_path / "o2.nii.gz").exists()


def test_png_keeps_bit_depth_and_units(tmp_path, model_file, colin):
    from PIL import Image

    data, _ = colin
    img8 = np.clip(data[:, :, 1], 0, 255).astype(np.uint8)
    Image.fromarray(img8).save(tmp_path / "s.png")
    out = tmp_path / "s_up.png"
    assert main(["upscale", str(tmp_path / "s.png"), "--scale", "2", "-o", str(out),
                 "--model", str(model_file)]) == 0  # fmt: skip
    result = np.asarray(Image.open(out))
    assert result.dtype == np.uint8 and result.shape == (100, 100)
    assert abs(float(result.mean()) - float(img8.mean())) < 0.05 * float(img8.mean())
