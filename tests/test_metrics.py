"""PSNR/SSIM against scikit-image with the same settings, on a real MRI slice."""

from __future__ import annotations

from importlib import resources

import nibabel as nib
import numpy as np
import pytest

from metasrgan.metrics import luminance, psnr, ssim, ssim_map

skm = pytest.importorskip("skimage.metrics")


@pytest.fixture(scope="module")
def pair():
    """A real MRI slice in [0, 1] and a noisy, blurred version of it."""
    path = resources.files("metasrgan") / "samples" / "mni152_val.nii.gz"
    hr = np.asarray(nib.load(str(path)).dataobj[20:116, 30:140, 6], dtype=np.float64) / 255.0
    rng = np.random.default_rng(0)
    sr = np.clip(0.9 * hr + 0.05 + rng.normal(0, 0.03, hr.shape), 0, 1)
    return sr, hr


def _sk_ssim(sr, hr, data_range):
    return skm.structural_similarity(
        sr,
        hr,
        data_range=data_range,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )


@pytest.mark.parametrize("data_range", [1.0, 255.0, 3.7])
def test_psnr_and_ssim_match_scikit_image(pair, data_range):
    sr, hr = pair[0] * data_range, pair[1] * data_range
    assert psnr(sr, hr, data_range) == pytest.approx(
        skm.peak_signal_noise_ratio(hr, sr, data_range=data_range), abs=1e-9
    )
    assert ssim(sr, hr, data_range) == pytest.approx(_sk_ssim(sr, hr, data_range), abs=1e-9)


def test_ssim_map_matches_scikit_image_full_map(pair):
    sr, hr = pair
    _, full = skm.structural_similarity(
        sr, hr, data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, full=True,
    )  # fmt: skip
    np.testing.assert_allclose(ssim_map(sr, hr, 1.0), full, atol=1e-10)


def test_data_range_is_required_and_matters(pair):
    sr, hr = pair
    with pytest.raises(TypeError):
        psnr(sr, hr)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="data_range"):
        ssim(sr, hr, 0.0)
    assert psnr(sr, hr, 2.0) == pytest.approx(psnr(sr, hr, 1.0) + 20 * np.log10(2))
    assert ssim(sr, hr, 2.0) != pytest.approx(ssim(sr, hr, 1.0))


def test_masked_metrics(pair):
    sr, hr = pair
    mask = hr > 0
    assert 0 < mask.mean() < 1
    diff = (sr - hr)[mask]
    assert psnr(sr, hr, 1.0, mask) == pytest.approx(10 * np.log10(1 / np.mean(diff**2)))
    full = ssim_map(sr, hr, 1.0)[5:-5, 5:-5]
    assert ssim(sr, hr, 1.0, mask) == pytest.approx(full[mask[5:-5, 5:-5]].mean())
    everything = np.ones_like(mask)
    assert ssim(sr, hr, 1.0, everything) == pytest.approx(ssim(sr, hr, 1.0))
    assert psnr(sr, hr, 1.0, everything) == pytest.approx(psnr(sr, hr, 1.0))
    with pytest.raises(ValueError, match="empty"):
        psnr(sr, hr, 1.0, np.zeros_like(mask))


def test_identical_and_bad_inputs(pair):
    _, hr = pair
    assert psnr(hr, hr, 1.0) == float("inf")
    assert ssim(hr, hr, 1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        psnr(hr[:-1], hr, 1.0)
    with pytest.raises(ValueError, match="at least"):
        ssim(hr[:8, :8], hr[:8, :8], 1.0)


def test_luminance():
    gray = np.random.default_rng(1).random((16, 16))
    assert luminance(gray) is not None and np.array_equal(luminance(gray), gray)
    rgb = np.stack([gray, gray, gray], axis=-1)
    np.testing.assert_allclose(luminance(rgb), gray)  # weights sum to 1
    red = np.zeros((4, 4, 3))
    red[..., 0] = 1.0
    np.testing.assert_allclose(luminance(red), 0.299)
    np.testing.assert_allclose(luminance(red * 255, 255.0, studio=True), 16 + 65.481)
    np.testing.assert_allclose(luminance(np.zeros((4, 4, 3)), 1.0, studio=True), 16 / 255)
    with pytest.raises(ValueError):
        luminance(np.zeros((4, 4, 4)))
