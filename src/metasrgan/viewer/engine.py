"""The zoom computation behind the viewer: Meta-SRGAN, bicubic and their difference for one slice.

The feature extractor (most of the model's cost) does not depend on the scale, so its output
is cached per slice (:meth:`MetaSRGAN.extract_features`): moving the zoom slider only re-runs
the Meta-Upscale Module (:meth:`MetaSRGAN.upscale_features`, the exact fast path).

Requested scales are snapped to the nearest fraction with a denominator of at most
:data:`MAX_DENOMINATOR` (the cost of predicting kernels grows with the numerator squared);
the result reports the scale it actually used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from torch import nn

from metasrgan.scale import AxisScale, Scale2d

MIN_SCALE = 1.0
MAX_SCALE = 4.0
MAX_DENOMINATOR = 10
"""Scales are fractions ``p/q`` with ``q <= 10``: every trained scale (1.1, 1.2...) is exact."""


def snap_scale(scale: float, max_denominator: int = MAX_DENOMINATOR) -> Fraction:
    """The fraction with a small denominator nearest to ``scale`` (within [1, 4])."""
    if not np.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be between {MIN_SCALE:g} and {MAX_SCALE:g}, got {scale:g}")
    return Fraction(str(float(scale))).limit_denominator(max_denominator)


def supports_feature_cache(model: nn.Module) -> bool:
    """True for a Meta-SRGAN generator whose pieces the viewer can run separately."""
    return hasattr(model, "extract_features") and hasattr(model, "upscale_features")


@torch.no_grad()
def extract_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The scale-independent part of Meta-SRGAN: ``[1, 1, H, W]`` in [0, 1] -> features."""
    return model.extract_features(x)


@torch.no_grad()
def upscale_from_features(
    model: nn.Module, x: torch.Tensor, feats: torch.Tensor, scale: Scale2d
) -> torch.Tensor:
    """The rest of :meth:`MetaSRGAN.forward` after the features, clamped to [0, 1]."""
    return model.upscale_features(x, feats, scale).clamp_(0.0, 1.0)


def warm_up(model: nn.Module) -> None:
    """One small zoom, so the first real request does not pay for the backend's set-up."""
    image = np.linspace(0.0, 1.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    zoom(model, image, Fraction(7, 3))


@dataclass
class ZoomResult:
    """One zoom of one slice: images in [0, 1] and how long each took."""

    scale: Fraction
    input_shape: tuple[int, int]
    metasrgan: np.ndarray
    bicubic: np.ndarray
    features_ms: float
    features_cached: bool
    metasrgan_ms: float
    bicubic_ms: float

    @property
    def difference(self) -> np.ndarray:
        return self.metasrgan - self.bicubic


def zoom(
    model: nn.Module,
    unit_slice: np.ndarray,
    scale: Fraction,
    features: torch.Tensor | None = None,
) -> tuple[ZoomResult, torch.Tensor | None]:
    """Zoom a slice already mapped to [0, 1]; returns the result and the features to cache.

    At scale 1 both images are the slice itself.  Models other than Meta-SRGAN fall back
    to :func:`metasrgan.inference.upscale_tensor` (no feature cache).
    """
    from metasrgan.inference import upscale_tensor
    from metasrgan.models import bicubic_resize

    image = np.ascontiguousarray(unit_slice, dtype=np.float32)
    if scale == 1:
        result = ZoomResult(scale, image.shape, image, image, 0.0, features is not None, 0.0, 0.0)
        return result, features
    device = next(iter(model.parameters())).device
    x = torch.from_numpy(image)[None, None].to(device)
    axis = AxisScale(scale.numerator, scale.denominator)
    scale2d = Scale2d(axis, axis)

    t0 = time.perf_counter()
    cached = features is not None
    if supports_feature_cache(model):
        if features is None:
            features = extract_features(model, x)
        t1 = time.perf_counter()
        sr = upscale_from_features(model, x, features, scale2d)
    else:
        t1 = t0
        sr = upscale_tensor(model, x, scale2d)
    t2 = time.perf_counter()
    with torch.no_grad():
        bic = bicubic_resize(x, scale2d.out_shape(*image.shape)).clamp_(0.0, 1.0)
    t3 = time.perf_counter()
    result = ZoomResult(
        scale=scale,
        input_shape=image.shape,
        metasrgan=sr[0, 0].cpu().numpy(),
        bicubic=bic[0, 0].cpu().numpy(),
        features_ms=0.0 if cached else (t1 - t0) * 1e3,
        features_cached=cached,
        metasrgan_ms=(t2 - t0) * 1e3,
        bicubic_ms=(t3 - t2) * 1e3,
    )
    return result, features
