"""Self-calibrated extrapolation: the gain beyond the band is fitted on real slices themselves."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from fixtures.models import AWARE, with_random_weights

from metasrgan.checkpoint import load_model
from metasrgan.degradations.fourier import acquired_band
from metasrgan.evaluation.inputs import load_images
from metasrgan.evaluation.protocol import prepare
from metasrgan.inference import shipped_model_path
from metasrgan.metrics import psnr
from metasrgan.models.calibration import gain_from
from metasrgan.registry import with_args
from metasrgan.tiling import upscale_tiled

CALIBRATED = {**AWARE, "args": {**AWARE["args"], "self_calibrate": True}}


def calibrated(model: torch.nn.Module, on: bool = True) -> torch.nn.Module:
    """The same weights with ``self_calibrate`` set (no parameters: they load exactly)."""
    return with_args(model, self_calibrate=on).eval()


@pytest.fixture(scope="module")
def shipped() -> tuple[torch.nn.Module, torch.nn.Module]:
    trained = load_model(shipped_model_path())
    return calibrated(trained, False), calibrated(trained, True)


@pytest.fixture(scope="module")
def macaque() -> torch.Tensor:
    """Three axial slices of the INIA19 macaque template (never trained on)."""
    images = load_images("inia19_macaque", max_images=5)[1:4]
    return torch.from_numpy(np.stack([im.array for im in images]))[:, None]


@pytest.fixture(scope="module")
def random_model() -> torch.nn.Module:
    return with_random_weights(CALIBRATED, 3).eval()


def test_the_gain_cuts_a_guess_that_does_not_fit_an_unseen_macaque(shipped, macaque):
    plain, model = shipped
    batch = prepare(macaque, Fraction(14, 5), "kspace")
    shape = tuple(batch.hr.shape[-2:])
    with torch.no_grad():
        gains = model.calibration_gains(batch.lr, "kspace")
        outputs = [m(batch.lr, batch.scale, shape, "kspace").clamp(0, 1) for m in (plain, model)]
    beyond, within = gains.unbind(1)
    assert bool(((beyond > 0.05) & (beyond < 0.95)).all()), gains
    assert within.tolist() == [1.0] * 3  # a k-space band is the scanner's: trusted, not fitted
    hr = batch.hr[:, 0].double().numpy()
    before, after = (np.mean([psnr(o[k, 0].double().numpy(), hr[k], 1.0) for k in range(3)])
                     for o in outputs)  # fmt: skip
    assert after > before + 0.3  # measured: +1.1 dB on these slices


def test_gain_one_is_the_trained_model_and_gain_zero_adds_nothing_beyond_the_band(
    random_model, macaque
):
    plain = calibrated(random_model, False)
    batch = prepare(macaque[:2], Fraction(2), "kspace")
    shape = tuple(batch.hr.shape[-2:])
    with torch.no_grad():
        reference = plain(batch.lr, batch.scale, shape, "kspace")
        full = random_model(batch.lr, batch.scale, shape, "kspace", gains=(1.0, 1.0))
        none = random_model(batch.lr, batch.scale, shape, "kspace", gains=(0.0, 1.0))
        skip = random_model.skip_image(batch.lr, shape, "kspace")
    torch.testing.assert_close(full, reference, atol=1e-5, rtol=0)
    added = none - skip
    assert float(added.abs().max()) > 1e-4  # the denoised part of the band is still there
    torch.testing.assert_close(acquired_band(added, tuple(batch.lr.shape[-2:])), added,
                               atol=1e-5, rtol=0)  # fmt: skip


def test_small_inputs_give_no_evidence_and_still_a_finite_image(random_model):
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert random_model.calibration_gains(x, "kspace").tolist() == [[1.0, 1.0]] * 2
        assert bool(torch.isfinite(random_model(torch.rand(1, 1, 4, 4), 4.0)).all())
        unscaled = random_model.calibration_terms(x, "kspace", thinned=(False, False))
    assert gain_from(unscaled).tolist() == [[1.0, 1.0]] * 2


def test_tiles_share_the_whole_images_gain(random_model, macaque):
    x = prepare(macaque[:1], Fraction(2), "kspace").lr
    with torch.no_grad():
        whole = random_model(x, 2.0, acquisition="kspace")
        tiled = upscale_tiled(random_model, x, 2.0, tile=24, acquisition="kspace")
        given = upscale_tiled(random_model, x, 2.0, tile=24, acquisition="kspace", gains=(0.5, 1))
        direct = random_model(x, 2.0, acquisition="kspace", gains=(0.5, 1))
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(given, direct, atol=1e-5, rtol=0)


def test_blurred_input_gets_a_gain_within_the_band_when_clean_only(shipped, macaque):
    from metasrgan.degradations.noise import add_noise

    _, model = shipped
    clean = prepare(macaque, Fraction(2), "bicubic").lr
    noisy = add_noise(clean, 0.03, "rician", torch.Generator().manual_seed(0))
    with torch.no_grad():
        within_clean = model.calibration_gains(clean, "bicubic")[:, 1]
        within_noisy = model.calibration_gains(noisy, "bicubic")[:, 1]
        within_thick = model.calibration_gains(clean, "thick", thinned=(True, False))[:, 1]
    assert bool((within_clean != 1.0).all()) and bool((within_thick != 1.0).all())
    assert within_noisy.tolist() == [1.0] * 3  # its band holds noise its copy holds too


def test_thick_slices_are_calibrated_along_the_thinned_axis_either_way(random_model, macaque):
    x = prepare(macaque[:2], Fraction(2), "thick").lr
    with torch.no_grad():
        vertical = random_model.calibration_terms(x, "thick", thinned=(True, False))
        horizontal = random_model.calibration_terms(
            x.transpose(-2, -1).contiguous(), "thick", thinned=(False, True)
        )
    torch.testing.assert_close(horizontal, vertical, rtol=1e-3, atol=1e-6)  # float sums
    assert bool((vertical[:, 1] > 0).all())  # a fit was made


def test_a_volume_pass_fits_one_gain_on_its_slices(random_model, macaque):
    from metasrgan.intensity import IntensityMap
    from metasrgan.volume import _pass_statistics

    moved = macaque[:, 0].numpy()
    intensity = IntensityMap.fit(moved)
    noise, gains = _pass_statistics(random_model, moved, intensity, "bicubic", (True, True))
    unit = torch.from_numpy(intensity.apply(moved, clip=False))[:, None]
    with torch.no_grad():
        terms = random_model.calibration_terms(unit[::4], "bicubic", noise).sum(0)
    assert gains == pytest.approx(gain_from(terms).tolist(), abs=1e-6)
    assert 0.0 <= gains[0] <= 1.0 and 0.0 <= gains[1] <= 1.5


def test_the_viewer_fits_a_slices_gains_once_and_zooms_with_them(random_model, macaque):
    pytest.importorskip("fastapi")
    import gzip

    import nibabel as nib
    from fastapi.testclient import TestClient

    from metasrgan.viewer import server

    app = server.create_app(model=random_model, preload_sample=None, lookahead=0)
    viewer = app.state.viewer
    c = TestClient(app, base_url="http://127.0.0.1:8000",
                   headers={"x-metasrgan-token": viewer.token})  # fmt: skip
    volume = np.ascontiguousarray(np.moveaxis(macaque[:, 0].numpy(), 0, -1))
    body = gzip.compress(nib.Nifti1Image(volume, np.eye(4)).to_bytes())
    vol = c.post("/api/volumes?filename=macaque.nii.gz", content=body).json()
    calls, estimates = [], []
    fit, estimate = random_model.calibration_terms, random_model.noise_estimator.forward
    random_model.calibration_terms = lambda *a, **k: calls.append(1) or fit(*a, **k)
    random_model.noise_estimator.forward = lambda *a: estimates.append(a[0].shape) or estimate(*a)
    try:
        for scale in ("2.00", "3.00"):
            zoom = dict(volume=vol["id"], axis="axial", index=1, scale_h=scale, scale_w=scale)
            assert c.get("/api/zoom.bin", params=zoom).status_code == 200
    finally:
        del random_model.calibration_terms, random_model.noise_estimator.forward
    ((key, (beyond, within)),) = [(k, g) for k, g in viewer.gains._cache.items()]
    assert len(calls) == 1  # fitted once; both zooms pass them on
    # the slice's noise level: estimated once, shared by its features, the fit and both zooms
    # (four estimates before they did)
    assert len(estimates) == 1
    assert key[2] == 1 and 0.0 <= beyond <= 1.0 and within == 1.0  # k-space: beyond only
