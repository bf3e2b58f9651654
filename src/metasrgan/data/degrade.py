"""Low-resolution images made from high-resolution ones, for training and evaluation.

- ``bicubic``: antialiased bicubic downscaling (the paper's protocol).
- ``kspace``: Fourier cropping, the way a scanner's smaller acquisition matrix loses
  resolution (keeps the central ``lr`` frequencies of the ``hr`` spectrum).

Both take ``[..., H, W]`` tensors and an exact LR shape; pick HR sizes whose LR size times
the scale is an integer (see :func:`metasrgan.data.patches.exact_patch_sizes`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metasrgan.scale import Scale2d

DEGRADATIONS = ("bicubic", "kspace")


def lr_shape(hr_shape: tuple[int, int], scale) -> tuple[int, int]:
    """LR size such that upscaling it by ``scale`` gives back ``hr_shape`` (or the nearest)."""
    s = Scale2d.of(scale)
    return (
        max(1, round(hr_shape[0] * s.h.q / s.h.p)),
        max(1, round(hr_shape[1] * s.w.q / s.w.p)),
    )


def bicubic_downscale(hr: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of ``[B, C, H, W]`` (or ``[H, W]``) to ``shape``."""
    squeeze = hr.dim() == 2
    x = hr[None, None] if squeeze else hr
    y = F.interpolate(x, size=tuple(shape), mode="bicubic", align_corners=False, antialias=True)
    return y[0, 0] if squeeze else y


def kspace_downscale(hr: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Keep the central ``shape`` frequencies of the 2D spectrum (Fourier cropping).

    Intensities are preserved (the mean of the output equals the mean of the input).
    """
    h, w = hr.shape[-2:]
    lh, lw = shape
    if lh > h or lw > w:
        raise ValueError(f"k-space truncation cannot enlarge {h}x{w} to {lh}x{lw}")
    spectrum = torch.fft.fftshift(torch.fft.fft2(hr.to(torch.float64)), dim=(-2, -1))
    top, left = h // 2 - lh // 2, w // 2 - lw // 2
    cropped = spectrum[..., top : top + lh, left : left + lw]
    out = torch.fft.ifft2(torch.fft.ifftshift(cropped, dim=(-2, -1))).real
    return (out * (lh * lw) / (h * w)).to(hr.dtype)


def degrade(hr: torch.Tensor, shape: tuple[int, int], kind: str = "bicubic") -> torch.Tensor:
    if kind == "bicubic":
        return bicubic_downscale(hr, shape)
    if kind == "kspace":
        return kspace_downscale(hr, shape)
    raise ValueError(f"unknown degradation {kind!r}; choose from {', '.join(DEGRADATIONS)}")
