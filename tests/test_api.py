"""The public Python API on real MRI crops, the README's examples as doctests, and property
tests of the option parsers."""

import doctest
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import metasrgan
from metasrgan.api.options import Request, UsageError, parse_size, parse_spacing
from metasrgan.registry import make
from metasrgan.samples_path import sample_path
from metasrgan.scale import MAX_SCALE, MAX_SCALE_DENOMINATOR, Scale2d, parse_scale, parse_scales
from metasrgan.volume import spacing_of

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1, "norm": "none",
                                                "skip": "bicubic"}}).eval()  # fmt: skip


@pytest.fixture(scope="module")
def scan():
    return nib.load(sample_path("colin27_val")).slicer[60:92, 70:102, 3:6]


def test_import_is_torch_free_and_exposes_the_api():
    code = "import sys, metasrgan; print('torch' in sys.modules, metasrgan.UsageError.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "UsageError"]
    for name in ("load_model", "upscale", "upscale_file"):
        assert callable(getattr(metasrgan, name))


def test_nibabel_volume_in_plane_keeps_units_header_and_fov(tiny, scan):
    out = metasrgan.upscale(scan, scale=2, model=tiny)
    assert isinstance(out, nib.Nifti1Image) and out.shape == (64, 64, 3)
    assert out.get_data_dtype() == np.float32
    np.testing.assert_allclose(spacing_of(out.affine), [0.5, 0.5, 1.0], atol=1e-9)
    np.testing.assert_allclose(out.header.get_zooms(), [0.5, 0.5, 1.0], atol=1e-6)
    # the outer edge of the first voxel is the same plane: the field of view is kept
    np.testing.assert_allclose(out.affine @ [-0.5, -0.5, 0, 1], scan.affine @ [-0.5, -0.5, 0, 1])
    data = scan.get_fdata()
    assert abs(out.get_fdata().mean() - data.mean()) < 0.05 * data.mean()


def test_arrays_2d_and_3d_with_affine(tiny, scan, one_thread):
    data = scan.get_fdata(dtype=np.float32)
    out = metasrgan.upscale(data[:, :, 0] * 7.0, scale=2.5, model=tiny)
    assert out.shape == (80, 80) and out.dtype == np.float32
    assert abs(out.mean() - 7.0 * data[:, :, 0].mean()) < 0.05 * 7.0 * data[:, :, 0].mean()
    assert metasrgan.upscale(data[:, :, 0], size=(40, 50), model=tiny).shape == (40, 50)
    volume, affine = metasrgan.upscale(data, spacing=0.5, model=tiny, affine=scan.affine, batch=64)
    assert volume.shape == (64, 64, 6)
    np.testing.assert_allclose(spacing_of(affine), [0.5, 0.5, 0.5], atol=1e-9)
    with pytest.raises(ValueError, match="without an affine"):
        metasrgan.upscale(data, scale=2, model=tiny)


def test_tensor_batch_in_unit_range(tiny, scan):
    x = torch.from_numpy(scan.get_fdata(dtype=np.float32)).permute(2, 0, 1)[:, None] / 1000
    y = metasrgan.upscale(x.clamp(0, 1), scale=(1.5, 3), model=tiny)
    assert y.shape == (3, 1, 48, 96) and float(y.min()) >= 0 and float(y.max()) <= 1
    assert not y.is_inference()
    y.mul_(2)  # a normal tensor: in-place edits work
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        metasrgan.upscale(x[:, 0], scale=2, model=tiny)


def test_requests_that_do_not_fit_are_usage_errors(tiny, scan):
    data = scan.get_fdata(dtype=np.float32)
    with pytest.raises(UsageError, match="exactly one"):
        metasrgan.upscale(data[:, :, 0], scale=2, size=(64, 64), model=tiny)
    with pytest.raises(UsageError, match="--spacing and --axes apply to volumes"):
        metasrgan.upscale(data[:, :, 0], spacing=0.5, model=tiny)
    with pytest.raises(UsageError, match="above --max-voxels 100"):
        metasrgan.upscale(data[:, :, 0], scale=2, model=tiny, max_voxels=100)
    with pytest.raises(UsageError, match="a pair"):
        metasrgan.upscale(scan, scale=(2, 3), model=tiny)


class RecordingModel(nn.Module):
    """A model that takes an acquisition, as the conditioned Meta-SRGAN does."""

    acquisitions = ("bicubic", "kspace", "thick")
    default_acquisition = "kspace"

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def forward(self, x, scale, out_shape=None, acquisition=None):
        self.calls.append((Scale2d.of(scale).values, acquisition))
        return self.inner(x, scale, out_shape)


def test_acquisition_is_thick_through_plane_and_the_choice_in_plane(tiny, scan, one_thread):
    thick = nib.Nifti1Image(scan.get_fdata(dtype=np.float32), scan.affine @ np.diag([1, 1, 2, 1]))
    model = RecordingModel(tiny).eval()
    metasrgan.upscale(thick, spacing=0.5, model=model, batch=64)
    seen = {(values, acq) for values, acq in model.calls}
    assert seen == {((2.0, 2.0), "kspace"), ((1.0, 4.0), "thick")}
    model.calls.clear()
    metasrgan.upscale(thick, spacing=0.5, model=model, acquisition="bicubic", batch=64)
    assert {acq for _, acq in model.calls} == {"bicubic", "thick"}
    with pytest.raises(UsageError, match="this model knows"):
        RecordingModel.acquisitions = ("bicubic", "kspace")
        try:
            metasrgan.upscale(thick, scale=2, model=model, acquisition="thick")
        finally:
            RecordingModel.acquisitions = ("bicubic", "kspace", "thick")


def test_models_without_acquisitions_get_no_keyword(tiny, scan):
    with pytest.warns(UserWarning, match="no effect"):
        out = metasrgan.upscale(scan, scale=2, model=tiny, acquisition="kspace")
    assert out.shape == (64, 64, 3)


def test_far_spacings_warn(tiny, scan):
    tiny_voxels = nib.Nifti1Image(scan.get_fdata(dtype=np.float32), np.diag([0.1, 0.1, 0.1, 1]))
    with pytest.warns(UserWarning, match="far from"):
        metasrgan.upscale(tiny_voxels, scale=2, model=tiny)


def test_upscale_file_writes_nifti_and_sidecar(tmp_path, tiny, scan):
    src = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(scan, str(src))
    result = metasrgan.upscale_file(src, tmp_path / "sr.nii.gz", scale=2, model=tiny)
    assert result.out_shape == (64, 64, 3) and "->" in result.summary()
    assert (tmp_path / "sr.json").is_file()
    with pytest.raises(UsageError, match="--overwrite"):
        metasrgan.upscale_file(src, tmp_path / "sr.nii.gz", scale=2, model=tiny)


def _readme_examples() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return "\n".join(b for b in blocks if ">>>" in b)


def test_readme_python_examples_run(tmp_path, monkeypatch, one_thread):
    text = _readme_examples()
    assert text.count(">>>") >= 8, "the README's Python API section lost its examples"
    monkeypatch.chdir(tmp_path)
    test = doctest.DocTestParser().get_doctest(text, {}, "README.md", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} README example(s) failed (see above)"


# --------------------------------------------------------------------------- properties

FAST = settings(max_examples=150, deadline=None)


@FAST
@given(st.one_of(st.text(max_size=12), st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(-10**6, 10**6), st.fractions()))  # fmt: skip
def test_parse_scale_returns_a_bounded_fraction_or_a_value_error(value):
    try:
        s = parse_scale(value)
    except ValueError as err:
        assert str(err).startswith("scale")
        return
    assert 1 < s <= MAX_SCALE and s.denominator <= MAX_SCALE_DENOMINATOR


@FAST
@given(st.integers(1, 160), st.integers(1, 10))
def test_parse_scale_is_exact_for_every_allowed_p_over_q(p, q):
    frac = Fraction(p, q)
    if 1 < frac <= MAX_SCALE:
        assert parse_scale(f"{p}/{q}") == frac == parse_scale(frac)
        assert parse_scale(float(frac)) == frac  # 7/3 as 2.3333333333333335 too
    else:
        with pytest.raises(ValueError):
            parse_scale(f"{p}/{q}")


@FAST
@given(st.lists(st.sampled_from(["1.1:4.0:0.1", "2", "2.5", "3,4", "7/3", "1.5:2:0.25"]),
                min_size=1, max_size=4))  # fmt: skip
def test_parse_scales_is_unique_exact_and_sortable(parts):
    spec = ",".join(parts)
    scales = parse_scales(spec, sort=True)
    assert list(scales) == sorted(set(scales)) and all(isinstance(s, Fraction) for s in scales)
    assert parse_scales(spec, as_float=True, sort=True) == tuple(float(s) for s in scales)


@FAST
@given(st.text(max_size=14))
def test_parse_size_returns_positive_pixels_or_a_usage_error(text):
    try:
        h, w = parse_size(text)
    except UsageError as err:
        assert "--size" in str(err)
        return
    assert h >= 1 and w >= 1
    assert (h, w) == tuple(int(v) for v in text.lower().replace(" ", "").split("x"))


@FAST
@given(st.one_of(st.text(max_size=14), st.floats(), st.lists(st.floats(), max_size=4)))
def test_parse_spacing_returns_positive_finite_mm_or_a_usage_error(value):
    try:
        spacing = parse_spacing(value)
    except UsageError as err:
        assert "--spacing" in str(err)
        return
    values = spacing if isinstance(spacing, tuple) else (spacing,)
    assert len(values) in (1, 3) and all(np.isfinite(v) and v > 0 for v in values)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["2", "1.5", "7/3", "4.01", "1/0", "0", "-2", "1e400", "x", "2,3"]),
       st.sampled_from([None, "40x40", "20x30", "0x5"]),
       st.integers(-2, 3))  # fmt: skip
def test_requests_either_validate_or_fail_with_a_usage_error(scale, size, batch):
    try:
        request = Request.of(scale=scale if size is None else None, size=size, batch=batch)
    except UsageError:
        return
    assert request.batch >= 1 and (request.scale is not None) != (request.size is not None)


def test_the_one_sample_list_matches_the_package_folder():
    from metasrgan.samples_path import SAMPLES, bundled_samples

    folder = sample_path(SAMPLES[0]).parent
    on_disk = {p.name.removesuffix(".nii.gz") for p in folder.glob("*.nii.gz")}
    assert set(bundled_samples()) == on_disk == set(SAMPLES)
    with pytest.raises(KeyError, match="bundled"):
        sample_path("nope")
