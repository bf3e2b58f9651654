"""Acquisitions, named degradation chains and weighted mixtures of them.

An *acquisition* says how the low-resolution image came to be and so what the network is
told and which interpolation its skip connection starts from:

- ``kspace``: a smaller in-plane acquisition matrix (what scanners do; skip: sinc);
- ``thick``: thick slices along one axis, upscaled with (s, 1) scales (skip: bicubic);
- ``bicubic``: software downscaling, the paper's benchmark protocol (skip: bicubic).

A *chain* is an acquisition plus its steps (``[{name, args}, ...]``, see
:mod:`~metasrgan.degradations.steps`), e.g. k-space truncation then Rician noise.  A
*plan* is a weighted mixture of chains, each with its own scales, in the spirit of
Real-ESRGAN's random degradation chains and TorchIO's ``RandomAnisotropy``: every training
batch draws one chain, one scale and the chain's random parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from metasrgan.degradations.steps import Step, make_step


@dataclass(frozen=True)
class Acquisition:
    name: str
    skip: str
    """Interpolation the network's skip connection uses for this kind of input."""
    through_plane: bool
    """Scales are (s, 1): only the vertical axis was thinned."""
    text: str


ACQUISITIONS: dict[str, Acquisition] = {
    a.name: a
    for a in (
        Acquisition("kspace", "sinc", False, "in-plane k-space truncation (scanner matrix)"),
        Acquisition("thick", "bicubic", True, "thick slices (slice profile, through-plane)"),
        Acquisition("bicubic", "bicubic", False, "software downscaling (the paper's protocol)"),
    )
}

PRESETS: dict[str, dict[str, Any]] = {
    "bicubic": {
        "acquisition": "bicubic",
        "steps": [{"name": "resize", "args": {"kernel": "bicubic"}}],
        "text": "antialiased bicubic downscaling of HR (the paper's protocol)",
    },
    "bicubic-noise": {
        "acquisition": "bicubic",
        "steps": [{"name": "resize"}, {"name": "noise", "args": {"sigma": 0.03}}],
        "text": "antialiased bicubic downscaling, then Rician noise (sigma 3% of the range)",
    },
    "kspace": {
        "acquisition": "kspace",
        "steps": [{"name": "kspace"}],
        "text": "k-space truncation of HR (central frequencies kept, no filter)",
    },
    "kspace-noise": {
        "acquisition": "kspace",
        "steps": [{"name": "kspace"}, {"name": "noise", "args": {"sigma": 0.03}}],
        "text": "k-space truncation, then Rician noise (sigma 3% of the range)",
    },
    "kspace-hamming": {
        "acquisition": "kspace",
        "steps": [{"name": "kspace", "args": {"window": "hamming"}}],
        "text": "k-space truncation with a Hamming filter",
    },
    "thick": {
        "acquisition": "thick",
        "steps": [{"name": "slice_profile", "args": {"profile": "gaussian"}}],
        "text": "thick slices: Gaussian slice profile, FWHM = spacing, along the vertical axis",
    },
    "thick-noise": {
        "acquisition": "thick",
        "steps": [{"name": "slice_profile"}, {"name": "noise", "args": {"sigma": 0.03}}],
        "text": "thick slices (Gaussian profile), then Rician noise (sigma 3%)",
    },
}
"""Named chains: the evaluation's degradations and building blocks for configs."""


@dataclass
class Chain:
    """Steps applied in order: the first makes the LR shape, the rest keep it."""

    acquisition: str
    steps: list[Step]
    spec: dict[str, Any]
    preset: str | None = None
    """The preset's name when the chain was made from one."""

    @property
    def text(self) -> str:
        return self.spec.get("text") or describe(self.spec)

    def scale_pair(self, scale: float) -> tuple[float, float]:
        return (scale, 1.0) if ACQUISITIONS[self.acquisition].through_plane else (scale, scale)

    def __call__(
        self, hr: torch.Tensor, shape: tuple[int, int], g: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.degrade(hr, shape, g)[0]

    def degrade(
        self, hr: torch.Tensor, shape: tuple[int, int], g: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The LR images and the standard deviation of the noise added to each (``[B]``,
        0 for clean ones): what a noise-aware model learns to estimate."""
        from metasrgan.degradations.steps import Noise

        x = hr
        variance = torch.zeros(hr.shape[0] if hr.dim() == 4 else 1, dtype=torch.float64)
        for step in self.steps:
            if isinstance(step, Noise):
                x, sigma = step.apply(x, g)
                variance = variance + sigma**2
            else:
                x = step(x, tuple(shape) if step.resizes else tuple(x.shape[-2:]), g)
        return x.clamp(0.0, 1.0), variance.sqrt()


def describe(spec: dict[str, Any]) -> str:
    parts = [
        s["name"]
        + ("(" + ", ".join(f"{k}={v}" for k, v in s["args"].items()) + ")" if s.get("args") else "")
        for s in spec["steps"]
    ]
    return f"{spec['acquisition']}: " + " -> ".join(parts)


def make_chain(spec: str | dict[str, Any]) -> Chain:
    """A preset name, ``{acquisition, steps: [...]}``, or one step ``{name, args}``."""
    preset = None
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown degradation {spec!r}; presets: {', '.join(PRESETS)}")
        preset, spec = spec, PRESETS[spec]
    if not isinstance(spec, dict):
        raise ValueError(f"a degradation is a preset name or a mapping, got {spec!r}")
    if "name" in spec:  # one step: its acquisition follows from what it imitates
        acquisition = {"kspace": "kspace", "slice_profile": "thick"}.get(spec["name"], "bicubic")
        spec = {"acquisition": acquisition, "steps": [spec]}
    unknown = set(spec) - {"acquisition", "steps", "text"}
    if unknown:
        raise ValueError(f"unknown keys in degradation chain: {sorted(unknown)}")
    acquisition = spec.get("acquisition")
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"acquisition {acquisition!r} is not one of {', '.join(ACQUISITIONS)}")
    steps = [make_step(s) for s in spec.get("steps") or []]
    if not steps or not steps[0].resizes or any(s.resizes for s in steps[1:]):
        raise ValueError("a chain starts with one resizing step, then only noise-like steps")
    return Chain(acquisition, steps, dict(spec), preset)


@dataclass
class Option:
    weight: float
    chain: Chain
    scales: tuple[float, ...]


@dataclass
class DegradationPlan:
    """Weighted chains; :meth:`draw` picks one per batch."""

    options: list[Option] = field(default_factory=list)

    def draw(self, g: torch.Generator | None = None) -> Option:
        if len(self.options) == 1:
            return self.options[0]
        weights = torch.tensor([o.weight for o in self.options], dtype=torch.float64)
        return self.options[int(torch.multinomial(weights, 1, generator=g))]

    @property
    def acquisitions(self) -> list[str]:
        return sorted({o.chain.acquisition for o in self.options})


def make_plan(spec: Any, default_scales: Sequence[float]) -> DegradationPlan:
    """From a config's ``degradation``: a preset name, a chain, or
    ``{mixture: [{weight, scales, preset | acquisition + steps}, ...]}``."""
    from metasrgan.scale import parse_scales

    if isinstance(spec, dict) and "mixture" in spec:
        if set(spec) != {"mixture"} or not spec["mixture"]:
            raise ValueError(
                "a mixture is {mixture: [{weight, scales, ...}, ...]} and nothing else"
            )
        options = []
        for i, item in enumerate(spec["mixture"]):
            item = dict(item)
            weight = float(item.pop("weight", 1.0))
            scales = item.pop("scales", None)
            preset = item.pop("preset", None)
            try:
                chain = make_chain(preset if preset is not None else item)
            except ValueError as err:
                raise ValueError(f"mixture[{i}]: {err}") from None
            if weight <= 0:
                raise ValueError(f"mixture[{i}].weight must be positive, got {weight}")
            picked = (
                parse_scales(scales, as_float=True) if scales is not None else tuple(default_scales)
            )
            options.append(Option(weight, chain, tuple(picked)))
        return DegradationPlan(options)
    return DegradationPlan([Option(1.0, make_chain(spec), tuple(default_scales))])
