"""The zoom computation behind the viewer: Meta-SRGAN and bicubic for one slice, any two scales.

The feature extractor (most of the model's cost) does not depend on the scale, so its output
is cached per slice (:meth:`MetaSRGAN.extract_features`): moving the zoom slider only re-runs
the Meta-Upscale Module (:meth:`MetaSRGAN.upscale_features`, the exact fast path).  Features
are computed in bands of rows with a halo as wide as the extractor's receptive field, which
is exact (every layer is a convolution or pointwise) and lets a computation stop between
bands when it is no longer wanted (:class:`Cancelled`).

Requested scales are snapped per axis to the nearest fraction with a denominator of at most
:data:`MAX_DENOMINATOR` (the cost of predicting kernels grows with the numerator squared);
the result reports the scales it actually used.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from torch import nn

from metasrgan.scale import AxisScale, Scale2d
from metasrgan.tiling import receptive_radius

MIN_SCALE = 1.0
MAX_SCALE = 4.0
"""The zoom slider's range: the scales the model was trained on."""
MAX_AXIS_SCALE = 6.0
"""One axis may go further (the "to isotropic" preset of a 1x1x5 mm scan needs x5); the page
says when a factor is outside the trained range."""
MAX_DENOMINATOR = 10
"""Scales are fractions ``p/q`` with ``q <= 10``: every trained scale (1.1, 1.2...) is exact."""
BAND_ROWS = 96
"""Rows of features computed at once (plus the halo): the granularity of cancellation."""


class Cancelled(Exception):
    """The computation was stopped because nobody wants its result any more."""


def snap_scale(scale: float, high: float = MAX_AXIS_SCALE) -> Fraction:
    """The fraction with a small denominator nearest to ``scale`` (within [1, ``high``])."""
    if not np.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    if not MIN_SCALE <= scale <= high:
        raise ValueError(f"scale must be between {MIN_SCALE:g} and {high:g}, got {scale:g}")
    return Fraction(str(float(scale))).limit_denominator(MAX_DENOMINATOR)


def snap_scales(scale_h: float, scale_w: float) -> Scale2d:
    """Both axes snapped (vertical, horizontal)."""
    h, w = snap_scale(scale_h), snap_scale(scale_w)
    return Scale2d(AxisScale(h.numerator, h.denominator), AxisScale(w.numerator, w.denominator))


def scale_text(scale: Scale2d) -> str:
    """``"5/2"`` for equal axes, ``"5/1x1/1"`` (vertical x horizontal) otherwise."""
    h, w = (f"{a.p}/{a.q}" for a in (scale.h, scale.w))
    return h if scale.symmetric else f"{h}x{w}"


def supports_feature_cache(model: nn.Module) -> bool:
    """True for a Meta-SRGAN generator whose pieces the viewer can run separately."""
    return hasattr(model, "extract_features") and hasattr(model, "upscale_features")


def acquisitions_of(model: nn.Module) -> tuple[str, ...]:
    """The acquisitions a conditioned model accepts (empty: it takes none)."""
    return tuple(getattr(model, "acquisitions", ()) or ())


@torch.no_grad()
def noise_level(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The noise level a noise-aware model reads on the ``[1, 1, H, W]`` slice ``x`` (what
    its features and every zoom of it share); None for other models."""
    return model.noise_level(x) if getattr(model, "uses_noise", False) else None


@torch.no_grad()
def extract_features(
    model: nn.Module,
    x: torch.Tensor,
    cancelled: Callable[[], bool] = lambda: False,
    band_rows: int = BAND_ROWS,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[1, 1, H, W]`` in [0, 1] -> features, in bands of rows; :class:`Cancelled` between
    bands once ``cancelled()`` is true.  ``noise``: the slice's :func:`noise_level`, if
    already estimated."""
    height = x.shape[-2]
    halo = receptive_radius(model)  # includes the Meta-Upscale's 1: one row to spare
    noise = noise_level(model, x) if noise is None else noise
    kwargs = {} if noise is None else {"noise": noise}  # the slice's, not each band's
    if height <= band_rows + 2 * halo:
        if cancelled():
            raise Cancelled
        return model.extract_features(x, **kwargs)
    parts = []
    for top in range(0, height, band_rows):
        if cancelled():
            raise Cancelled
        bottom = min(height, top + band_rows)
        lo, hi = max(0, top - halo), min(height, bottom + halo)
        band = model.extract_features(x[..., lo:hi, :], **kwargs)
        parts.append(band[..., top - lo : band.shape[-2] - (hi - bottom), :])
    return torch.cat(parts, dim=-2)


@torch.no_grad()
def calibration_gains(
    model: nn.Module,
    x: torch.Tensor,
    acquisition: str | None,
    thinned: tuple[bool, bool],
    noise: torch.Tensor | None = None,
) -> tuple[float, float]:
    """A self-calibrated model's gains for the ``[1, 1, H, W]`` slice ``x`` (at its own
    noise level, as :func:`extract_features` uses: ``noise`` if already estimated)."""
    beyond, within = model.calibration_gains(x, acquisition, noise, thinned=thinned)[0].tolist()
    return beyond, within


def _upscale_kwargs(model: nn.Module, acquisition: str | None) -> dict:
    if acquisition is None:
        return {}
    known = acquisitions_of(model)
    if acquisition not in known:
        raise ValueError(
            f"this model takes no acquisition {acquisition!r}"
            + (f"; it knows {', '.join(known)}" if known else " (it is not conditioned)")
        )
    if "acquisition" not in inspect.signature(model.upscale_features).parameters:
        raise ValueError("this model's upscale_features takes no acquisition")
    return {"acquisition": acquisition}


@torch.no_grad()
def upscale_from_features(
    model: nn.Module,
    x: torch.Tensor,
    feats: torch.Tensor,
    scale: Scale2d,
    acquisition: str | None = None,
    gains: tuple[float, float] | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """The rest of :meth:`MetaSRGAN.forward` after the features, clamped to [0, 1]
    (``gains`` and ``noise``: the slice's, when already known)."""
    kwargs = _upscale_kwargs(model, acquisition)
    if gains is not None:
        kwargs["gains"] = gains
    if noise is not None:
        kwargs["noise"] = noise
    return model.upscale_features(x, feats, scale, **kwargs).clamp_(0.0, 1.0)


def warm_up(model: nn.Module) -> None:
    """One small zoom, so the first real request does not pay for the backend's set-up."""
    image = np.linspace(0.0, 1.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    zoom(model, image, Scale2d.of(Fraction(7, 3)))


@dataclass
class ZoomResult:
    """One zoom of one slice: images in [0, 1] and how long each took."""

    scale: Scale2d
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
    scale: Scale2d,
    features: torch.Tensor | None = None,
    acquisition: str | None = None,
    gains: tuple[float, float] | None = None,
    noise: torch.Tensor | None = None,
) -> ZoomResult:
    """Zoom a slice already mapped to [0, 1], from cached ``features`` when given (and
    the slice's cached calibration ``gains`` and ``noise`` level, for the models that use
    them: :func:`calibration_gains`, :func:`noise_level`).

    At scale 1 both images are the slice itself.  Models other than Meta-SRGAN go through
    :func:`metasrgan.inference.upscale_tensor` (no feature cache).
    """
    from metasrgan.inference import upscale_tensor
    from metasrgan.models import bicubic_resize

    image = np.ascontiguousarray(unit_slice, dtype=np.float32)
    if scale.h.p == scale.h.q and scale.w.p == scale.w.q:
        return ZoomResult(scale, image.shape, image, image, 0.0, features is not None, 0.0, 0.0)
    device = next(iter(model.parameters())).device
    x = torch.from_numpy(image)[None, None].to(device)
    t0 = time.perf_counter()
    cached = features is not None
    if supports_feature_cache(model):
        if features is None:
            features = extract_features(model, x)
        t1 = time.perf_counter()
        sr = upscale_from_features(model, x, features, scale, acquisition, gains, noise)
    else:
        t1 = t0
        with torch.no_grad():
            sr = upscale_tensor(model, x, scale)
    t2 = time.perf_counter()
    with torch.no_grad():
        bic = bicubic_resize(x, scale.out_shape(*image.shape)).clamp_(0.0, 1.0)
    t3 = time.perf_counter()
    return ZoomResult(
        scale=scale,
        input_shape=image.shape,
        metasrgan=sr[0, 0].cpu().numpy(),
        bicubic=bic[0, 0].cpu().numpy(),
        features_ms=0.0 if cached else (t1 - t0) * 1e3,
        features_cached=cached,
        metasrgan_ms=(t2 - t0) * 1e3,
        bicubic_ms=(t3 - t2) * 1e3,
    )
