"""Issue 12's `upscale` cases: each one a clear message naming the option or file, the right
exit code, no output, no temp file, the input untouched.

Usage errors are given a model path that does not exist: the error must be about the
request, which proves that it is checked before the model is loaded or any work is done.
"""

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metasrgan.checkpoint import save_model
from metasrgan.cli import main
from metasrgan.registry import make
from metasrgan.samples_path import sample_path
from metasrgan.volume import spacing_of

NO_MODEL = "/nonexistent/never-loaded.safetensors"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1, "norm": "none",
                                                 "skip": "bicubic"}})  # fmt: skip
    return str(save_model(model, tmp_path_factory.mktemp("m") / "tiny.safetensors"))


@pytest.fixture(scope="module")
def crop():
    img = nib.load(sample_path("colin27_val"))
    return img.get_fdata(dtype=np.float32)[60:92, 70:102, 3:6], img.affine


def _nifti(path, data, affine):
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=2)
    nib.save(img, str(path))
    return path


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture
def scan(tmp_path, crop):
    """A BIDS-like input with its sidecar in its own folder."""
    folder = tmp_path / "in"
    folder.mkdir()
    src = _nifti(folder / "sub-01_T1w.nii.gz", *crop)
    (folder / "sub-01_T1w.json").write_text(json.dumps({"RepetitionTime": 2.3}))
    return src


USAGE_CASES = [
    (["--scale", "1/0"], "--scale"),
    (["--scale", "1e400"], "--scale"),
    (["--scale", "nan"], "--scale"),
    (["--scale", "0.5"], "--scale"),
    (["--scale", "1"], "--scale"),
    (["--scale", "4.01"], "use 4 = 4/1"),
    (["--scale", "100"], "--scale"),
    (["--scale", "2", "--batch", "-1"], "--batch"),
    (["--scale", "2", "--batch", "0"], "--batch"),
    (["--scale", "2", "--threads", "-1"], "--threads"),
    (["--scale", "2", "--device", "bogus"], "--device"),
    (["--scale", "2", "--max-voxels", "0"], "--max-voxels"),
    (["--spacing", "0"], "--spacing"),
    (["--spacing", "nan"], "--spacing"),
    (["--spacing", "1,1"], "--spacing"),
    (["--spacing", "0.001"], "--spacing 0.001 mm asks for x1000"),
    (["--spacing", "0.1", "--max-voxels", "1000000"], "3,072,000 output voxels"),
    (["--scale", "16", "--max-voxels", "100000"], "above --max-voxels 100,000"),
    (["--size", "64x64"], "--size applies to 2D"),
    (["--scale", "2", "--axes", "0", "0"], "--axes"),
]


@pytest.mark.parametrize("options, message", USAGE_CASES)
def test_bad_options_exit_2_before_any_work(tmp_path, scan, options, message, capsys):
    before = _digest(scan.parent)
    out = tmp_path / "out.nii.gz"
    code = main(["upscale", str(scan), *options, "-o", str(out), "--model", NO_MODEL])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert "never-loaded" not in err  # refused before the model was even looked at
    assert not out.exists() and _digest(scan.parent) == before
    assert not list(tmp_path.glob(".*"))  # no temp files


def test_an_unknown_acquisition_is_a_usage_error(scan, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["upscale", str(scan), "--scale", "2", "--acquisition", "mri", "-o",
              str(tmp_path / "o.nii.gz"), "--model", NO_MODEL])  # fmt: skip
    assert exc.value.code == 2 and "--acquisition" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, message",
    [
        ("sub-01_T1w.nii.gz", "is the input itself"),
        ("sub-01_T1w.json", "not .json"),
        ("sub-01_T1w.nii", "replace the input's own sub-01_T1w.json"),
        ("x.dcm", "DICOM is not written"),
        ("x.png", "a volume is written as .nii.gz, .nii"),
        ("existing_folder", "is a folder"),
    ],
)
def test_outputs_that_would_destroy_or_mislead_are_refused(scan, name, message, capsys):
    folder = scan.parent
    (folder / "existing_folder").mkdir(exist_ok=True)
    before = _digest(folder)
    code = main(["upscale", str(scan), "--scale", "2", "-o", str(folder / name),
                 "--model", NO_MODEL])  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err
    assert _digest(folder) == before


def test_a_png_is_never_written_over_itself(tmp_path, crop, capsys):
    from PIL import Image

    src = tmp_path / "slice.png"
    Image.fromarray(np.clip(crop[0][:, :, 0], 0, 255).astype(np.uint8)).save(src)
    before = src.read_bytes()
    assert main(["upscale", str(src), "--scale", "2", "-o", str(src), "--model", NO_MODEL]) == 2
    assert "is the input itself" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_2d_size_must_not_shrink_nor_explode(tmp_path, crop, capsys):
    src = tmp_path / "slice.npy"
    np.save(src, crop[0][:, :, 0])
    for size, message in [("16x40", "smaller than the input's 32x32"),
                          ("99999x99999", "is more than x16"),
                          ("32x32", "nothing to do"), ("32xab", "HxW")]:  # fmt: skip
        out = tmp_path / "o.npy"
        assert main(["upscale", str(src), "--size", size, "-o", str(out), "--model",
                     NO_MODEL]) == 2, size  # fmt: skip
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_an_existing_output_needs_overwrite(tmp_path, scan, model_file, capsys):
    out = tmp_path / "o.nii.gz"
    out.write_bytes(b"keep me")
    assert main(["upscale", str(scan), "--scale", "2", "-o", str(out), "--model", NO_MODEL]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(["upscale", str(scan), "--scale", "2", "-o", str(out), "--model", model_file,
                 "--overwrite", "--no-progress"]) == 0  # fmt: skip
    assert nib.load(out).shape == (64, 64, 3)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_one_slice_volumes_keep_their_geometry_on_every_axis(tmp_path, crop, model_file, axis):
    data = np.take(crop[0], [1], axis=axis) if axis == 2 else np.moveaxis(crop[0], 2, axis)[
        tuple(slice(0, 1) if a == axis else slice(None) for a in range(3))]  # fmt: skip
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[axis, axis] = 3.0
    src = _nifti(tmp_path / "one.nii.gz", np.ascontiguousarray(data), affine)
    out = tmp_path / "one_x2.nii.gz"
    assert main(["upscale", str(src), "--scale", "2", "-o", str(out), "--model", model_file,
                 "--no-progress"]) == 0  # fmt: skip
    img = nib.load(out)
    expected = [64, 64, 64]
    expected[axis] = 1
    assert img.shape == tuple(expected)
    zooms = [0.5, 0.5, 0.5]
    zooms[axis] = 3.0
    np.testing.assert_allclose(spacing_of(img.affine), zooms, atol=1e-9)
    # the single slice stays where it was: voxel centre (0,0,0)'s plane on the thin axis
    np.testing.assert_allclose((img.affine @ [0, 0, 0, 1])[axis], 0.0, atol=1e-9)


def test_a_singular_affine_is_refused(tmp_path, crop, model_file, capsys):
    img = nib.Nifti1Image(crop[0], np.eye(4))
    img.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=2)  # rank 2
    img.set_qform(None, code=0)
    nib.save(img, str(tmp_path / "flat.nii.gz"))
    out = tmp_path / "o.nii.gz"
    code = main(["upscale", str(tmp_path / "flat.nii.gz"), "--scale", "2", "-o", str(out),
                 "--model", model_file])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "flat.nii.gz" in err and "singular" in err
    assert not out.exists()


def test_a_model_that_outputs_nan_writes_nothing(tmp_path, scan, model_file, monkeypatch, capsys):
    from metasrgan import api

    model = make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1, "norm": "none"}})
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    monkeypatch.setattr(api, "load_model", lambda *a, **k: model.eval())
    out = tmp_path / "nan.nii.gz"
    code = main(["upscale", str(scan), "--scale", "2", "-o", str(out), "--no-progress"])
    assert code == 1
    assert "NaN or Inf" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "nan.json").exists()
    assert not list(tmp_path.glob(".*"))


def test_a_rerun_into_a_subfolder_never_reads_its_own_outputs(tmp_path, crop, model_file):
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", crop[0][:, :, 0])
    args = ["upscale", str(folder), "--scale", "1.5", "-o", str(folder / "out"),
            "--model", model_file, "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert main([*args, "--overwrite"]) == 0
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.npy"))
    assert written == ["a.npy", "out/a.npy"]  # no out/out/a.npy
    assert np.load(folder / "out" / "a.npy").shape == (48, 48)


def test_a_rerun_without_overwrite_is_refused_before_any_work(tmp_path, crop, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    np.save(folder / "a.npy", crop[0][:, :, 0])
    np.save(out / "a.npy", np.zeros((2, 2)))
    assert main(["upscale", str(folder), "--scale", "2", "-o", str(out), "--model",
                 NO_MODEL]) == 2  # fmt: skip
    assert "--overwrite" in capsys.readouterr().err
    assert np.load(out / "a.npy").shape == (2, 2)
    assert main(["upscale", str(folder), "--scale", "2", "-o", str(folder), "--model",
                 NO_MODEL]) == 2  # fmt: skip
    assert "is the input folder" in capsys.readouterr().err


SCALE_TEXT = st.one_of(
    st.sampled_from(["2", "1.5", "7/3", "4.01", "1/0", "1e400", "nan", "-1", "1", "16.5", "0x2"]),
    st.fractions(min_value=0, max_value=20, max_denominator=30).map(str),
    st.text("0123456789./e-", max_size=6),
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scale=SCALE_TEXT, batch=st.integers(-2, 3))
def test_any_scale_either_upscales_exactly_or_is_refused_with_nothing_written(
    tmp_path, model_file, crop, scale, batch
):
    from metasrgan.scale import parse_scale

    src = tmp_path / "s.npy"
    np.save(src, crop[0][:16, :16, 0])
    out = tmp_path / "o.npy"
    out.unlink(missing_ok=True)
    code = main(["upscale", str(src), f"--scale={scale}", f"--batch={batch}", "-o", str(out),
                 "--model", model_file, "--overwrite"])  # fmt: skip
    try:
        s = parse_scale(scale)
    except ValueError:
        s = None
    if s is None or batch < 1:
        assert code == 2 and not out.exists()
    else:
        assert code == 0 and np.load(out).shape == (16 * s.numerator // s.denominator,) * 2


def _png_header_only(path, side):
    """A PNG that declares ``side x side`` pixels in a few bytes (the pixels are absent)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))  # fmt: skip
    return path


@pytest.mark.parametrize("side, code, message", [
    (12000, 2, "576,000,000 output voxels"),  # fits the reader, not the output limit
    (20000, 1, "20000x20000"),  # refused by the reader's own limit, from the header
])  # fmt: skip
def test_huge_pictures_are_refused_from_their_header(tmp_path, side, code, message, capsys):
    src = _png_header_only(tmp_path / "huge.png", side)
    out = tmp_path / "huge_x2.png"
    assert main(["upscale", str(src), "--scale", "2", "-o", str(out), "--model", NO_MODEL]) == code
    err = capsys.readouterr().err
    assert message in err and "huge.png" in err
    assert not out.exists()


def test_a_2d_nifti_output_never_replaces_the_inputs_sidecar(tmp_path, crop, capsys):
    src = _nifti(tmp_path / "slice.nii.gz", np.ascontiguousarray(crop[0][:, :, 0]), crop[1])
    (tmp_path / "slice.json").write_text("{}")
    before = _digest(tmp_path)
    code = main(["upscale", str(src), "--scale", "2", "-o", str(tmp_path / "slice.nii"),
                 "--model", NO_MODEL])  # fmt: skip
    assert code == 2 and "replace the input's own slice.json" in capsys.readouterr().err
    assert _digest(tmp_path) == before
