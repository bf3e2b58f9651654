"""Both degradations: antialiased bicubic (the paper) and k-space truncation (checked by its
spectrum), on real MRI crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metasrgan.data.degrade import bicubic_downscale, degrade, kspace_downscale, lr_shape
from metasrgan.data.io import read_image
from metasrgan.samples_path import sample_path


@pytest.fixture(scope="module")
def slice_hr() -> torch.Tensor:
    vol = read_image(sample_path("mni152_val")).array
    image = vol[20:116, 30:126, 6]  # a 96x96 real crop
    return torch.from_numpy(image / image.max()).to(torch.float32)


def centred_spectrum(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.fft2(x.to(torch.float64)), dim=(-2, -1))


@pytest.mark.parametrize("lr", [(41, 35), (45, 45), (95, 63)])
def test_kspace_lr_spectrum_is_the_central_hr_spectrum(slice_hr, lr):
    hr = slice_hr
    out = kspace_downscale(hr, lr)
    assert out.shape == lr and out.dtype == hr.dtype
    h, w = hr.shape
    top, left = h // 2 - lr[0] // 2, w // 2 - lr[1] // 2
    expected = centred_spectrum(hr)[top : top + lr[0], left : left + lr[1]]
    expected = expected * (lr[0] * lr[1]) / (h * w)
    got = centred_spectrum(out)
    scale = expected.abs().max()
    # odd sizes: every frequency matches (the crop is Hermitian-symmetric)
    torch.testing.assert_close(got / scale, expected / scale, atol=2e-6, rtol=0)
    assert out.mean().item() == pytest.approx(hr.mean().item(), abs=1e-6)


def test_kspace_even_sizes_match_except_the_nyquist_lines(slice_hr):
    hr, lr = slice_hr, (48, 40)
    out = kspace_downscale(hr, lr)
    top, left = 96 // 2 - 24, 96 // 2 - 20
    expected = centred_spectrum(hr)[top : top + 48, left : left + 40] * (48 * 40) / 96**2
    got = centred_spectrum(out)
    scale = expected.abs().max()
    # row/column 0 of the centred LR spectrum is the Nyquist line, shared by +-f
    torch.testing.assert_close(got[1:, 1:] / scale, expected[1:, 1:] / scale, atol=2e-6, rtol=0)


def test_kspace_drops_exactly_the_energy_outside_the_band():
    n, lr = 64, 31
    y, x = torch.meshgrid(*(2 * [torch.arange(n, dtype=torch.float64)]), indexing="ij")
    inside = torch.cos(2 * torch.pi * 5 * x / n) + 0.5 * torch.sin(2 * torch.pi * 9 * y / n)
    outside = torch.cos(2 * torch.pi * 20 * x / n) * torch.cos(2 * torch.pi * 17 * y / n)
    # energy entirely outside the kept band (|f| <= 15) vanishes
    assert kspace_downscale(outside.double(), (lr, lr)).abs().max() < 1e-12
    # a band-limited image loses nothing: zero-padding the LR spectrum gives it back
    low = kspace_downscale((inside + outside).double(), (lr, lr))
    np.testing.assert_allclose(low, kspace_downscale(inside.double(), (lr, lr)), atol=1e-12)
    spectrum = torch.zeros(n, n, dtype=torch.complex128)
    c = n // 2 - lr // 2
    spectrum[c : c + lr, c : c + lr] = centred_spectrum(low) * (n * n) / (lr * lr)
    back = torch.fft.ifft2(torch.fft.ifftshift(spectrum)).real
    np.testing.assert_allclose(back, inside.double(), atol=1e-10)


def test_kspace_refuses_to_enlarge(slice_hr):
    with pytest.raises(ValueError, match="cannot enlarge"):
        kspace_downscale(slice_hr, (97, 40))


def test_bicubic_is_antialiased_like_pillow(slice_hr):
    from PIL import Image

    lr = bicubic_downscale(slice_hr, (40, 40))
    ref = Image.fromarray(slice_hr.numpy(), mode="F").resize((40, 40), Image.BICUBIC)
    np.testing.assert_allclose(lr.numpy(), np.asarray(ref), atol=2e-3)
    batch = slice_hr[None, None].repeat(2, 1, 1, 1)
    assert bicubic_downscale(batch, (40, 40)).shape == (2, 1, 40, 40)
    flat = torch.full((30, 30), 0.25)
    torch.testing.assert_close(bicubic_downscale(flat, (13, 11)), torch.full((13, 11), 0.25))


@pytest.mark.parametrize("kind", ["bicubic", "kspace"])
def test_degrade_at_an_exact_scale(slice_hr, kind):
    shape = lr_shape((92, 92), 2.3)
    assert shape == (40, 40)  # 40 * 2.3 == 92 exactly
    out = degrade(slice_hr[:92, :92][None, None], shape, kind)
    assert out.shape == (1, 1, 40, 40)
    assert abs(out.mean().item() - slice_hr[:92, :92].mean().item()) < 0.01
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(slice_hr, shape, "blur")
