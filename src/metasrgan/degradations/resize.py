"""Resize kernels: how a low-resolution image is made by image-processing software.

These are not what a scanner does (see :mod:`~metasrgan.degradations.fourier` and
:mod:`~metasrgan.degradations.profile`) but what benchmarks and retrospective studies do:
antialiased bicubic (the paper's protocol, MATLAB's ``imresize``), area averaging (pixel
binning) and antialiased bilinear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KERNELS = ("bicubic", "bilinear", "area")


def resize(x: torch.Tensor, shape: tuple[int, int], kernel: str = "bicubic") -> torch.Tensor:
    """``[B, C, H, W]`` (or ``[H, W]``) to ``shape`` with an antialiased ``kernel``."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown resize kernel {kernel!r}; choose from {', '.join(KERNELS)}")
    squeeze = x.dim() == 2
    x4 = x[None, None] if squeeze else x
    if kernel == "area":
        y = F.adaptive_avg_pool2d(x4, tuple(shape))
    else:
        y = F.interpolate(x4, size=tuple(shape), mode=kernel, align_corners=False, antialias=True)
    return y[0, 0] if squeeze else y
