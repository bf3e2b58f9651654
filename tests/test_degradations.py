"""Degradations on real MRI crops: k-space truncation and zero-filled interpolation (checked
by the spectrum and by exact round trips), slice profiles, noise, chains and mixtures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metasrgan.data.io import read_image
from metasrgan.degradations import (
    PRESETS,
    available_steps,
    fourier_resize,
    make_chain,
    make_plan,
    make_step,
)
from metasrgan.degradations.profile import profile_matrix
from metasrgan.samples_path import sample_path


@pytest.fixture(scope="module")
def slice_hr() -> torch.Tensor:
    vol = read_image(sample_path("mni152_val")).array
    image = vol[20:116, 30:126, 6]  # a 96x96 real crop
    return torch.from_numpy(image / image.max()).to(torch.float64)


def centred_spectrum(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.fft2(x.to(torch.float64)), dim=(-2, -1))


@pytest.mark.parametrize("lr", [(41, 35), (45, 45), (95, 63)])
def test_kspace_keeps_the_central_spectrum_up_to_the_pixel_centre_phase(slice_hr, lr):
    """Odd LR sizes: every kept frequency is the HR one, times the phase ramp that moves the
    FFT's corner grid to pixel centres, times the size ratio."""
    hr = slice_hr
    out = fourier_resize(hr, lr)
    assert out.shape == lr and out.dtype == hr.dtype
    h, w = hr.shape
    fy = torch.fft.fftshift(torch.fft.fftfreq(h, 1 / h)).round()[:, None]
    fx = torch.fft.fftshift(torch.fft.fftfreq(w, 1 / w)).round()[None, :]
    dy, dx = 0.5 * (h / lr[0] - 1), 0.5 * (w / lr[1] - 1)
    ramp = torch.exp(2j * math.pi * (fy * dy / h + fx * dx / w))
    full = centred_spectrum(hr) * ramp
    top, left = h // 2 - lr[0] // 2, w // 2 - lr[1] // 2
    expected = full[top : top + lr[0], left : left + lr[1]] * (lr[0] * lr[1]) / (h * w)
    got = centred_spectrum(out)
    scale = expected.abs().max()
    torch.testing.assert_close(got / scale, expected / scale, atol=1e-9, rtol=0)
    assert out.mean().item() == pytest.approx(hr.mean().item(), abs=1e-9)


@pytest.mark.parametrize("window", ["none", "hamming", "fermi"])
@pytest.mark.parametrize("boundary", ["periodic", "mirror"])
@pytest.mark.parametrize("lr", [(41, 35), (48, 48), (96, 57)])
def test_the_matrix_path_is_the_fft_definition(slice_hr, window, boundary, lr):
    """The cached per-axis matrices give the complex128 FFTs' result (to 1e-12 in float64,
    4e-6 in float32), down and up, with or without a window; past the size limit the FFTs
    run (same result)."""
    import metasrgan.degradations.fourier as fourier

    for source, target in [(slice_hr, lr), (fourier.fourier_resize(slice_hr, lr), (96, 96))]:
        exact = fourier.fourier_resize_fft(source, target, boundary, window)
        got = fourier_resize(source, target, boundary, window)
        torch.testing.assert_close(got, exact, atol=1e-12, rtol=0)
        single = fourier_resize(source.float()[None, None].expand(2, 1, -1, -1), target,
                                boundary, window)  # fmt: skip
        assert single.dtype == torch.float32 and single.shape == (2, 1, *target)
        torch.testing.assert_close(single[1, 0].double(), exact, atol=4e-6, rtol=0)
    key = (96, lr[0], boundary, window, torch.float64, slice_hr.device)
    assert fourier.axis_matrix(*key) is fourier.axis_matrix(*key)  # cached
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fourier, "MATRIX_MAX_ELEMENTS", 0)
        assert fourier_resize(slice_hr, lr, boundary, window).equal(
            fourier.fourier_resize_fft(slice_hr, lr, boundary, window)
        )


@pytest.mark.parametrize(("n", "m"), [(37, 80), (40, 96), (40, 91), (36, 47), (45, 100)])
@pytest.mark.parametrize("boundary", ["periodic", "mirror"])
def test_zero_filling_then_truncating_is_the_identity(n, m, boundary):
    x = torch.rand(2, 1, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    up = fourier_resize(x, (m, m), boundary)
    torch.testing.assert_close(fourier_resize(up, (n, n), boundary), x, atol=1e-9, rtol=0)


def test_zero_filled_interpolation_samples_a_band_limited_signal_at_pixel_centres():
    n, m = 64, 150
    f = lambda t: torch.cos(2 * math.pi * 3 * t / n) + 0.3 * torch.sin(2 * math.pi * 7 * t / n)  # noqa: E731
    x = f(torch.arange(n, dtype=torch.float64)).expand(3, n)
    y = fourier_resize(x, (3, m))
    centres = (torch.arange(m, dtype=torch.float64) + 0.5) * n / m - 0.5
    torch.testing.assert_close(y[1], f(centres), atol=1e-9, rtol=0)


def test_windows_and_partial_fourier(slice_hr):
    plain = fourier_resize(slice_hr, (48, 48))
    for window in ("hamming", "tukey", "fermi"):
        filtered = fourier_resize(slice_hr, (48, 48), window=window)
        # a low-pass filter: less high-frequency energy, the same mean
        assert filtered.diff(dim=-1).abs().mean() < plain.diff(dim=-1).abs().mean()
        assert filtered.mean().item() == pytest.approx(plain.mean().item(), abs=1e-9)
    partial = fourier_resize(slice_hr, (48, 48), partial_fourier=0.625)
    assert float(partial.min()) >= 0.0  # a magnitude image
    assert 0.0 < float((partial - plain).abs().mean()) < 0.05
    with pytest.raises(ValueError, match="partial_fourier"):
        fourier_resize(slice_hr, (48, 48), partial_fourier=0.4)
    with pytest.raises(ValueError, match="window"):
        fourier_resize(slice_hr, (48, 48), window="hann")


@pytest.mark.parametrize("profile", ["gaussian", "box"])
def test_slice_profile_weights(profile):
    w = profile_matrix(96, 16, profile, fwhm=6.0)
    torch.testing.assert_close(w.sum(1), torch.ones(16, dtype=torch.float64))
    # slice k is centred on row (k + 0.5) * 6 - 0.5, symmetric about it
    centres = (w * torch.arange(96, dtype=torch.float64)).sum(1)
    torch.testing.assert_close(centres[2:-2], (torch.arange(16.0) + 0.5)[2:-2].double() * 6 - 0.5)
    if profile == "box":  # a 6-pixel box covers exactly six rows
        assert torch.equal((w[5] > 0).nonzero().flatten(), torch.arange(30, 36))


def test_thick_slices_thin_only_the_vertical_axis(slice_hr):
    chain = make_chain("thick")
    assert chain.scale_pair(5.0) == (5.0, 1.0)
    lr = chain(slice_hr[:95][None, None].float(), (19, 96))
    assert lr.shape == (1, 1, 19, 96)
    flat = torch.full((1, 1, 60, 20), 0.4)
    torch.testing.assert_close(chain(flat, (10, 20)), flat[:, :, :10])
    with pytest.raises(ValueError, match="vertical axis only"):
        chain(flat, (10, 10))
    gap = make_step({"name": "slice_profile", "args": {"gap": 0.5}})
    assert gap(flat, (10, 20)).shape == (1, 1, 10, 20)


def test_rician_noise_is_biased_in_the_background_and_per_image(slice_hr):
    g = torch.Generator().manual_seed(0)
    zeros = torch.zeros(4, 1, 64, 64)
    noisy = make_step({"name": "noise", "args": {"sigma": 0.05}})(zeros, (64, 64), g)
    # Rician background: mean sigma * sqrt(pi / 2), never negative
    assert float(noisy.min()) >= 0
    assert float(noisy.mean()) == pytest.approx(0.05 * math.sqrt(math.pi / 2), rel=0.05)
    ranged = make_step({"name": "noise", "args": {"kind": "gaussian", "sigma": [0.0, 0.1]}})
    stds = ranged(zeros, (64, 64), g).flatten(1).std(1)
    assert float(stds.max() - stds.min()) > 0.01  # one sigma per image
    never = make_step({"name": "noise", "args": {"p": 0.0}})
    assert torch.equal(never(zeros, (64, 64), g), zeros)


def test_every_preset_degrades_a_real_slice(slice_hr):
    hr = slice_hr[None, None].float().repeat(2, 1, 1, 1)
    for name in PRESETS:
        chain = make_chain(name)
        s = chain.scale_pair(3.0)
        shape = (32, 32) if s[1] == 3.0 else (32, 96)
        lr = chain(hr, shape, torch.Generator().manual_seed(1))
        assert lr.shape == (2, 1, *shape), name
        assert float(lr.min()) >= 0.0 and float(lr.max()) <= 1.0
        assert abs(float(lr.mean()) - float(hr.mean())) < 0.03, name
        assert chain.text


def test_random_arguments_are_drawn_from_the_generator(slice_hr):
    hr = slice_hr[None, None].float()
    chain = make_chain(
        {
            "acquisition": "kspace",
            "steps": [
                {"name": "kspace", "args": {"window": ["none", "hamming"], "boundary": "mirror"}},
                {"name": "noise", "args": {"sigma": [0.0, 0.05]}},
            ],
        }
    )
    a = chain(hr, (40, 40), torch.Generator().manual_seed(5))
    b = chain(hr, (40, 40), torch.Generator().manual_seed(5))
    c = chain(hr, (40, 40), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mixtures_and_errors():
    plan = make_plan(
        {
            "mixture": [
                {"weight": 3, "preset": "kspace"},
                {"weight": 1, "preset": "thick", "scales": "2:6:1"},
            ]
        },
        (2.0, 3.0),
    )
    assert plan.acquisitions == ["kspace", "thick"]
    assert plan.options[1].scales == (2.0, 3.0, 4.0, 5.0, 6.0)
    g = torch.Generator().manual_seed(0)
    drawn = [plan.draw(g).chain.acquisition for _ in range(400)]
    assert 0.65 < drawn.count("kspace") / 400 < 0.85
    assert make_plan("bicubic", (2.0,)).options[0].chain.acquisition == "bicubic"
    assert make_chain({"name": "kspace"}).acquisition == "kspace"
    assert set(available_steps()) == {"kspace", "noise", "resize", "slice_profile"}
    for bad, message in [
        ("blur", "unknown degradation 'blur'"),
        ({"name": "blur"}, "unknown degradation step 'blur'"),
        ({"name": "resize", "args": {"kernel": "nearest"}}, "resize kernel 'nearest'"),
        ({"name": "resize", "args": {"size": 3}}, "bad arguments for degradation step"),
        ({"acquisition": "mri", "steps": [{"name": "resize"}]}, "acquisition 'mri'"),
        ({"acquisition": "kspace", "steps": [{"name": "noise"}]}, "starts with one resizing"),
        ({"name": "noise", "args": {"sigma": [0.2, 0.1]}}, "sigma must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            make_chain(bad)
    with pytest.raises(ValueError, match=r"mixture\[0\].weight"):
        make_plan({"mixture": [{"weight": 0, "preset": "kspace"}]}, (2.0,))


def test_resize_kernels_are_antialiased_like_pillow(slice_hr):
    from PIL import Image

    hr = slice_hr.float()
    lr = make_chain("bicubic")(hr[None, None], (40, 40))[0, 0]
    ref = Image.fromarray(hr.numpy(), mode="F").resize((40, 40), Image.BICUBIC)
    np.testing.assert_allclose(lr.numpy(), np.clip(np.asarray(ref), 0, 1), atol=2e-3)
    area = make_step({"name": "resize", "args": {"kernel": "area"}})(hr[None, None], (48, 48))
    expected = hr.reshape(48, 2, 48, 2).mean(dim=(1, 3))
    torch.testing.assert_close(area[0, 0], expected)
