"""Degradation steps as a registry of ``{name, args}`` specs (like the models').

A step maps ``[B, 1, H, W]`` images in [0, 1] to a given LR shape (or keeps the shape: noise).
Numeric arguments may be ranges ``[low, high]`` and text arguments lists of choices: each
batch then draws its own value (each image, for noise), from the batch's generator, so
training batches stay a pure function of ``(seed, step)``.
"""

from __future__ import annotations

from typing import Any

import torch

from metasrgan.degradations.fourier import WINDOWS, fourier_resize
from metasrgan.degradations.noise import add_noise
from metasrgan.degradations.profile import PROFILES, slice_profile_resample
from metasrgan.degradations.resize import KERNELS, resize
from metasrgan.registry import Registry

StepSpec = dict[str, Any]
STEPS = Registry("degradation step", error=ValueError)
register = STEPS.register


def available_steps() -> list[str]:
    return STEPS.names()


def make_step(spec: StepSpec | str) -> Step:
    """Build a step from ``{"name": ..., "args": {...}}`` (or just its name)."""
    return STEPS.make(spec)


def _choices(value: Any, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    options = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    for v in options:
        if v not in allowed:
            raise ValueError(f"{what} {v!r} is not one of {', '.join(allowed)}")
    return options


def _span(value: Any, low: float, high: float, what: str) -> tuple[float, float]:
    lo, hi = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if not low <= lo <= hi <= high:
        raise ValueError(f"{what} must be a number or [low, high] within [{low}, {high}]")
    return float(lo), float(hi)


def _pick(options: tuple[str, ...], g: torch.Generator | None) -> str:
    return (
        options[int(torch.randint(len(options), (1,), generator=g))]
        if len(options) > 1
        else options[0]
    )


def _uniform(span: tuple[float, float], g: torch.Generator | None, n: int = 1) -> torch.Tensor:
    lo, hi = span
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


class Step:
    resizes = True

    def __call__(
        self, x: torch.Tensor, shape: tuple[int, int], g: torch.Generator | None = None
    ) -> torch.Tensor:
        raise NotImplementedError


@register("resize")
class Resize(Step):
    """Antialiased resize with ``kernel`` bicubic (the paper's), bilinear or area."""

    def __init__(self, kernel: str | list[str] = "bicubic"):
        self.kernels = _choices(kernel, KERNELS, "resize kernel")

    def __call__(self, x, shape, g=None):
        return resize(x, shape, _pick(self.kernels, g))


@register("kspace")
class KSpace(Step):
    """A smaller acquisition matrix: the central frequencies, an apodisation ``window``
    (none, hamming, tukey, fermi), optional ``partial_fourier`` (fraction of lines kept on one
    side, < 1).  ``boundary``: ``periodic`` for whole fields of view (the scanner's model),
    ``mirror`` for training patches (no wrap-around edge of a cut-out patch)."""

    def __init__(
        self,
        window: str | list[str] = "none",
        partial_fourier: float | list[float] = 1.0,
        boundary: str = "periodic",
    ):
        self.windows = _choices(window, WINDOWS, "k-space window")
        self.partial = _span(partial_fourier, 0.5001, 1.0, "partial_fourier")
        self.boundary = _choices(boundary, ("periodic", "mirror"), "boundary")[0]

    def __call__(self, x, shape, g=None):
        partial = float(_uniform(self.partial, g)) if self.partial[0] < 1.0 else 1.0
        return fourier_resize(x, shape, self.boundary, _pick(self.windows, g), partial)


@register("slice_profile")
class SliceProfile(Step):
    """Thick slices along the vertical axis: a ``profile`` (gaussian or box) with FWHM equal
    to the slice spacing times ``1 - gap`` (``gap``: the fraction of the spacing between
    slices that is not excited).  The horizontal axis keeps its resolution."""

    def __init__(self, profile: str | list[str] = "gaussian", gap: float | list[float] = 0.0):
        self.profiles = _choices(profile, PROFILES, "slice profile")
        self.gap = _span(gap, 0.0, 0.9, "gap")

    def __call__(self, x, shape, g=None):
        if shape[1] != x.shape[-1]:
            raise ValueError("slice_profile thins the vertical axis only: use scales (s, 1)")
        gap = float(_uniform(self.gap, g)) if self.gap[1] > 0 else 0.0
        spacing = x.shape[-2] / shape[0]
        return slice_profile_resample(x, shape[0], _pick(self.profiles, g), spacing * (1 - gap))


@register("noise")
class Noise(Step):
    """Rician (magnitude images) or Gaussian noise of std ``sigma`` (fraction of the range;
    a range draws one per image), added to each image with probability ``p``."""

    resizes = False

    def __init__(self, kind: str = "rician", sigma: float | list[float] = 0.03, p: float = 1.0):
        self.kind = _choices(kind, ("rician", "gaussian"), "noise kind")[0]
        self.sigma = _span(sigma, 0.0, 0.5, "sigma")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"noise p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x, shape, g=None):
        return self.apply(x, g)[0]

    def apply(self, x: torch.Tensor, g=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The noisy images and each one's ``sigma`` (``[n]`` float64, 0 where none)."""
        n = x.shape[0] if x.dim() == 4 else 1
        sigma = _uniform(self.sigma, g, n)
        if self.p < 1.0:
            sigma = sigma * (torch.rand(n, generator=g, dtype=torch.float64) < self.p)
        view = (n, 1, 1, 1) if x.dim() == 4 else ()
        return add_noise(x, sigma.view(view).to(x.dtype), self.kind, g), sigma
