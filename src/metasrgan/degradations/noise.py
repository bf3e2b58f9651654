"""Acquisition noise.  Magnitude MR images carry Rician noise: the complex image has Gaussian
noise of standard deviation ``sigma`` on its real and imaginary parts, and taking the
magnitude makes it Rician (signal-dependent bias in the dark background, nearly Gaussian in
tissue).  ``sigma`` is a fraction of the image range [0, 1]; the brain's SNR is roughly
``mean brain intensity / sigma`` (a brain at 0.5 with ``sigma = 0.02`` has SNR 25)."""

from __future__ import annotations

import torch


def add_noise(
    x: torch.Tensor, sigma: torch.Tensor | float, kind: str, g: torch.Generator | None = None
) -> torch.Tensor:
    """``x`` plus Gaussian (``kind="gaussian"``) or Rician noise of std ``sigma`` (a number
    or one value per image, shape ``[B, 1, 1, 1]``)."""
    if kind not in ("gaussian", "rician"):
        raise ValueError(f"noise kind must be 'gaussian' or 'rician', got {kind!r}")
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    real = x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    if kind == "gaussian":
        return real
    imag = sigma * torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    return torch.sqrt(real * real + imag * imag)
