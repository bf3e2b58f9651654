"""The evaluation protocol: exact sizes, the degradation, the metric regions.

For each HR slice (intensities mapped to [0, 1]), degradation and nominal scale ``s``:

1. **Scales.**  In-plane acquisitions use ``(s, s)``; through-plane ones (thick slices) use
   ``(s, 1)``: only the vertical axis was thinned.
2. **Exact sizes.**  HR is cropped (never resized), centred, to the largest size whose sides
   are multiples of each axis' ``p`` (``s = p/q``); LR is then ``HR * q / p`` exactly, so LR
   upscaled by ``s`` is HR pixel for pixel.
3. **Degradation.**  LR = ``chain(HR)`` (see :mod:`metasrgan.degradations`), clamped to
   [0, 1] like a stored image; noise is drawn from a generator seeded by the slice batch and
   scale, so every method sees the same noisy LR and reruns are identical.
4. **Metrics** (``data_range = 1.0``) in three regions: ``crop``, the maximal-information
   window (the paper's crop) located once on the original slice; ``slice``, the whole
   exact-size HR; ``brain``, the pixels where HR > ``mask_threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from metasrgan.metrics import SSIM_RADIUS, psnr, ssim, ssim_map
from metasrgan.scale import Scale2d

DATA_RANGE = 1.0
REGIONS = ("crop", "slice", "brain")
REGION_TITLES = {
    "crop": "maximal-information crop",
    "slice": "whole slice",
    "brain": "brain (HR > 0)",
}


def exact_hr_window(shape: tuple[int, int], scale) -> tuple[int, int, int, int]:
    """Centred ``(top, left, height, width)`` whose sides are multiples of each axis' ``p``."""
    s = Scale2d.of(scale)
    h, w = shape[0] - shape[0] % s.h.p, shape[1] - shape[1] % s.w.p
    if h == 0 or w == 0:
        raise ValueError(
            f"a {shape[0]}x{shape[1]} image is too small for scale {s.values}: an exact LR "
            f"size needs sides of at least {s.h.p}x{s.w.p} pixels"
        )
    return (shape[0] - h) // 2, (shape[1] - w) // 2, h, w


def exact_lr_shape(hr_shape: tuple[int, int], scale) -> tuple[int, int]:
    return Scale2d.of(scale).in_shape(*hr_shape)


def information_window(image: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The maximal-information crop of ``size`` (clipped to the image) on ``image``."""
    from metasrgan.data.crop import max_information_crop

    size = (min(size[0], image.shape[0]), min(size[1], image.shape[1]))
    if size == tuple(image.shape):
        return 0, 0, size[0], size[1]
    return tuple(int(v) for v in max_information_crop(image, size))  # type: ignore[return-value]


def shift_window(
    window: tuple[int, int, int, int], origin: tuple[int, int], shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A window of the original slice in the coordinates of a sub-image at ``origin``.

    Moved inside (and shrunk to) the sub-image where it would cross its border.
    """
    top, left, h, w = window
    h, w = min(h, shape[0]), min(w, shape[1])
    top = min(max(top - origin[0], 0), shape[0] - h)
    left = min(max(left - origin[1], 0), shape[1] - w)
    return top, left, h, w


@dataclass
class Prepared:
    """One degraded batch: exact-size HR, its LR, where HR sits in the slice, the scale
    pair and the acquisition a conditioned model is told."""

    hr: torch.Tensor
    lr: torch.Tensor
    origin: tuple[int, int]
    scale: Scale2d
    acquisition: str


def prepare(hr: torch.Tensor, scale: Fraction, degradation="bicubic", seed: int = 0) -> Prepared:
    """Crop ``[B, 1, H, W]`` HR to an exact size for ``scale`` and degrade it."""
    from metasrgan.degradations import Chain, make_chain

    chain = degradation if isinstance(degradation, Chain) else make_chain(degradation)
    pair = Scale2d.of(chain.scale_pair(scale) if not isinstance(scale, tuple) else scale)
    top, left, h, w = exact_hr_window(tuple(hr.shape[-2:]), pair)
    hr = hr[..., top : top + h, left : left + w]
    g = torch.Generator().manual_seed(seed * 1_000_003 + int(Fraction(scale) * 1000))
    lr = chain(hr, exact_lr_shape((h, w), pair), g)
    return Prepared(hr, lr, (top, left), pair, chain.acquisition)


def region_metrics(
    sr: np.ndarray,
    hr: np.ndarray,
    window: tuple[int, int, int, int],
    mask_threshold: float = 0.0,
) -> dict[str, tuple[float, float]]:
    """``{region: (psnr, ssim)}`` for one image (``window`` in ``hr``'s coordinates).

    The whole-slice SSIM map is computed once and averaged twice (slice, brain); this is
    exactly :func:`metasrgan.metrics.ssim` with and without the mask.
    """
    t, left, h, w = window
    crop = (slice(t, t + h), slice(left, left + w))
    r = SSIM_RADIUS
    interior = ssim_map(sr, hr, DATA_RANGE)[r:-r, r:-r]
    out = {
        "crop": (psnr(sr[crop], hr[crop], DATA_RANGE), ssim(sr[crop], hr[crop], DATA_RANGE)),
        "slice": (psnr(sr, hr, DATA_RANGE), float(interior.mean(dtype=np.float64))),
    }
    mask = hr > mask_threshold
    inside = mask[r:-r, r:-r]
    if inside.any():
        out["brain"] = (
            psnr(sr, hr, DATA_RANGE, mask),
            float(interior[inside].mean(dtype=np.float64)),
        )
    else:  # no brain in the slice (or only at its border)
        out["brain"] = (math.nan, math.nan)
    return out
