"""Classical interpolation: the baselines a super-resolution model must beat.

Every method maps ``[B, 1, h, w]`` to ``[B, 1, H, W]`` with the project's pixel-centre rule
(new pixel ``j`` of ``H`` sits at old continuous index ``(j + 0.5) * h / H - 0.5``):

- ``bicubic``: Keys cubic convolution (PyTorch's, a = -0.75), what most viewers do;
- ``lanczos``: Lanczos-3 windowed sinc (PIL's and ImageMagick's default for quality);
- ``bspline``: cubic B-spline interpolation (``scipy.ndimage``, nibabel/ANTs resampling);
- ``sinc``: zero-filled k-space (the scanner console's "ZIP"), exact on band-limited images;
- ``sinc-mirror``: the same on the mirror-extended image (no wrap-around at the borders):
  the skip connection of models conditioned on k-space acquisitions.

Lanczos and the B-spline are separable matrices and ``scipy`` on the CPU: evaluation-time
baselines, not hot paths.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from metasrgan.degradations.fourier import fourier_resize

Interpolator = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def bicubic(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(shape), mode="bicubic", align_corners=False)


def _lanczos_matrix(n: int, m: int, a: int = 3) -> torch.Tensor:
    """``[m, n]`` Lanczos-``a`` weights, half-sample-symmetric borders, rows summing to 1."""
    centres = (np.arange(m) + 0.5) * n / m - 0.5
    taps = np.floor(centres)[:, None] + np.arange(-a + 1, a + 1)[None, :]
    d = centres[:, None] - taps
    w = np.sinc(d) * np.sinc(d / a) * (np.abs(d) < a)
    idx = taps.astype(np.int64)
    idx = np.where(idx < 0, -1 - idx, idx)
    idx = np.where(idx > n - 1, 2 * n - 1 - idx, idx).clip(0, n - 1)
    out = np.zeros((m, n))
    np.add.at(out, (np.repeat(np.arange(m), 2 * a), idx.ravel()), w.ravel())
    return torch.from_numpy(out / out.sum(axis=1, keepdims=True))


def lanczos(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    wh = _lanczos_matrix(x.shape[-2], shape[0]).to(x)
    ww = _lanczos_matrix(x.shape[-1], shape[1]).to(x)
    return wh @ x @ ww.T


def bspline(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    from scipy import ndimage

    h, w = x.shape[-2:]
    rows = (np.arange(shape[0]) + 0.5) * h / shape[0] - 0.5
    cols = (np.arange(shape[1]) + 0.5) * w / shape[1] - 0.5
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"))
    flat = x.detach().reshape(-1, h, w).cpu().double().numpy()
    out = np.stack([ndimage.map_coordinates(im, grid, order=3, mode="reflect") for im in flat])
    return torch.from_numpy(out).reshape(*x.shape[:-2], *shape).to(x)


def sinc(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return fourier_resize(x, shape, "periodic")


def sinc_mirror(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return fourier_resize(x, shape, "mirror")


INTERPOLATORS: dict[str, Interpolator] = {
    "bicubic": bicubic,
    "lanczos": lanczos,
    "bspline": bspline,
    "sinc": sinc,
    "sinc-mirror": sinc_mirror,
}
CLASSICAL = ("bicubic", "lanczos", "bspline", "sinc")
"""The baselines every evaluation table reports beside the models."""
TITLES = {
    "bicubic": "Bicubic",
    "lanczos": "Lanczos-3",
    "bspline": "Cubic B-spline",
    "sinc": "Zero-filled sinc",
    "sinc-mirror": "Sinc (mirrored)",
}


def interpolate(x: torch.Tensor, shape: tuple[int, int], method: str = "bicubic") -> torch.Tensor:
    """Upscale ``[B, C, h, w]`` to ``shape`` with a classical ``method`` (see the module)."""
    if method not in INTERPOLATORS:
        raise ValueError(
            f"unknown interpolation {method!r}; choose from {', '.join(INTERPOLATORS)}"
        )
    if math.prod(shape) == 0:
        raise ValueError(f"empty output shape {shape}")
    return INTERPOLATORS[method](x, tuple(shape))
