"""The zoom computation behind the viewer: Meta-SRGAN, bicubic and their difference for one slice.

Two things make a slider feel real-time on a CPU:

- The feature extractor (most of the model's cost) does not depend on the scale, so its
  output is cached per slice: moving the zoom slider only re-runs the Meta-Upscale Module.
- The upscaler here (:func:`lattice_upscale`) computes the same function as
  :meth:`MetaUpscale.forward` with the ideal number of multiply-adds.  Output pixels whose
  source rows share ``r0 mod q_h`` (and columns ``c0 mod q_w``) read the same strided
  lattice of input pixels, so each such group of phases is one ``stride=(q_h, q_w)``
  convolution with all its phases' kernels; a final gather puts every output pixel in
  place.  At most ``q_h * q_w`` convolutions run: fastest for short periods (integer and
  half scales); see :func:`upscale_features` for longer ones.

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
import torch.nn.functional as F
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
    return all(hasattr(model, name) for name in ("features", "upscale", "normalization", "skip"))


@torch.no_grad()
def extract_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The scale-independent part of Meta-SRGAN: ``[1, 1, H, W]`` in [0, 1] -> features."""
    return model.features(model.normalization.encode(x))


@torch.no_grad()
def lattice_upscale(module: nn.Module, feats: torch.Tensor, scale: Scale2d) -> torch.Tensor:
    """:meth:`MetaUpscale.forward` at the ideal cost (see the module docstring)."""
    batch, channels, height, width = feats.shape
    h_out, w_out = scale.out_shape(height, width)
    k = module.kernel_size
    out_ch = module.out_channels
    kernels = module._phase_kernels(scale, feats)  # [p_h, p_w, O, C, k, k]
    pad = k // 2
    xp = F.pad(feats, (pad, pad, pad, pad))
    row_groups = _residue_groups(scale.h)
    col_groups = _residue_groups(scale.w)
    n_rows = -(-height // scale.h.q)
    n_cols = -(-width // scale.w.q)
    lattice = feats.new_zeros(scale.h.p, scale.w.p, batch, out_ch, n_rows, n_cols)
    in_place = scale.h.q * scale.w.q <= 4  # few groups: convolve the padded map directly
    for rh, phases_h in row_groups.items():
        # many groups: gather each lattice's neighbourhoods into a small map first
        xr = None if in_place else xp.index_select(2, _lattice_index(rh, height, scale.h.q, k))
        for rw, phases_w in col_groups.items():
            weight = kernels[phases_h][:, phases_w].reshape(-1, channels, k, k)
            if xr is None:
                y = F.conv2d(xp[:, :, rh:, rw:], weight, stride=(scale.h.q, scale.w.q))
            else:
                cols = _lattice_index(rw, width, scale.w.q, k)
                y = F.conv2d(xr.index_select(3, cols), weight, stride=k)
            y = y.view(batch, len(phases_h), len(phases_w), out_ch, *y.shape[-2:])
            lattice[phases_h[:, None], phases_w[None, :], :, :, : y.shape[-2], : y.shape[-1]] = (
                y.permute(1, 2, 0, 3, 4, 5)
            )
    rows = torch.arange(h_out)
    cols = torch.arange(w_out)
    src_r = (rows * scale.h.q) // scale.h.p
    src_c = (cols * scale.w.q) // scale.w.p
    out = lattice[
        (rows % scale.h.p)[:, None],
        (cols % scale.w.p)[None, :],
        :,
        :,
        (src_r // scale.h.q)[:, None],
        (src_c // scale.w.q)[None, :],
    ]  # [H_out, W_out, B, O]
    return out.permute(2, 3, 0, 1).contiguous()


def upscale_features(module: nn.Module, feats: torch.Tensor, scale: Scale2d) -> torch.Tensor:
    """The fastest exact Meta-Upscale here: the lattice for short periods, else the module's.

    With ``q_h * q_w <= 4`` the lattice runs a few large convolutions.  For longer periods a
    module with the batched offset-group path (``MetaUpscale._forward_offset_groups``) beats
    many small convolutions; older modules waste ``q_w`` times the work, so the lattice
    stays in charge for them.
    """
    if scale.h.q * scale.w.q > 4 and hasattr(module, "_forward_offset_groups"):
        return module(feats, scale)
    return lattice_upscale(module, feats, scale)


def _lattice_index(start: int, n: int, q: int, k: int) -> torch.Tensor:
    """Padded indices of the ``k`` neighbours of input pixels ``start, start + q, ...``."""
    count = -(-(n - start) // q)
    return ((start + torch.arange(count) * q)[:, None] + torch.arange(k)).reshape(-1)


def _residue_groups(axis: AxisScale) -> dict[int, torch.Tensor]:
    """Phases grouped by the residue (mod q) of the first input index they read."""
    groups: dict[int, list[int]] = {}
    for a in range(axis.p):
        groups.setdefault(axis.phase_start(a) % axis.q, []).append(a)
    return {r: torch.tensor(phases) for r, phases in groups.items()}


@torch.no_grad()
def upscale_from_features(
    model: nn.Module, x: torch.Tensor, feats: torch.Tensor, scale: Scale2d
) -> torch.Tensor:
    """The rest of :meth:`MetaSRGAN.forward` after the features, clamped to [0, 1]."""
    from metasrgan.models import bicubic_resize

    out_shape = scale.out_shape(*x.shape[-2:])
    y = upscale_features(model.upscale, feats, scale)
    if model.skip == "bicubic":
        y = bicubic_resize(x, out_shape) + y * model.normalization.std
    else:
        y = model.normalization.decode(y)
    return y.clamp_(0.0, 1.0)


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
