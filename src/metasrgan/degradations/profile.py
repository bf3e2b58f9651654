"""Thick slices: each acquired slice integrates the object over its slice profile.

A 2D multi-slice acquisition excites one slab at a time; the slab's profile is roughly
Gaussian (or box-shaped for well-designed RF pulses) with a FWHM about the slice thickness,
and slices may leave a gap between them.  Low-resolution slice ``k`` of ``m`` sits at
high-resolution index ``c_k = (k + 0.5) * n / m - 0.5`` (the project's pixel-centre rule)
and is the profile-weighted sum of the high-resolution rows, each row integrated over its
own pixel (so a box of any width, and Gaussians narrower than a pixel, stay exact).
"""

from __future__ import annotations

import math

import torch

PROFILES = ("gaussian", "box")


def profile_matrix(n: int, m: int, profile: str, fwhm: float) -> torch.Tensor:
    """``[m, n]`` weights (rows sum to 1) of the ``m`` slices over ``n`` fine rows."""
    if profile not in PROFILES:
        raise ValueError(f"unknown slice profile {profile!r}; choose from {', '.join(PROFILES)}")
    if not fwhm > 0:
        raise ValueError(f"slice profile FWHM must be positive, got {fwhm}")
    centres = (torch.arange(m, dtype=torch.float64) + 0.5) * n / m - 0.5
    lo = torch.arange(n, dtype=torch.float64)[None, :] - 0.5 - centres[:, None]
    hi = lo + 1.0
    if profile == "gaussian":
        sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        cdf = lambda t: 0.5 * (1.0 + torch.erf(t / (sigma * math.sqrt(2.0))))  # noqa: E731
        w = cdf(hi) - cdf(lo)
    else:
        w = (hi.clamp(max=fwhm / 2) - lo.clamp(min=-fwhm / 2)).clamp(min=0.0)
    return w / w.sum(dim=1, keepdim=True).clamp(min=1e-12)


def slice_profile_resample(
    x: torch.Tensor, m: int, profile: str = "gaussian", fwhm: float | None = None
) -> torch.Tensor:
    """Thick-slice ``[..., H, W]`` along H to ``m`` slices; FWHM defaults to the spacing."""
    n = x.shape[-2]
    weights = profile_matrix(n, m, profile, n / m if fwhm is None else fwhm)
    return torch.einsum("mn,...nw->...mw", weights.to(x.dtype).to(x.device), x)
