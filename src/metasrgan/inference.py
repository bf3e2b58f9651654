"""Running a trained model on images: device choice, the shipped model, 2D upscaling.

Volumes, files and folders build on :func:`upscale_image` (see :mod:`metasrgan.volume`).
"""

from __future__ import annotations

import os
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from metasrgan.intensity import IntensityMap
from metasrgan.scale import Scale2d

SHIPPED_MODEL = "metasrgan-mri.safetensors"
TILE_ABOVE_PIXELS = 512 * 512
"""Inputs larger than this are upscaled in tiles (same result, bounded memory)."""


class UntrainedModelWarning(UserWarning):
    pass


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA GPU is available")
    return torch.device(name)


def shipped_model_path() -> Path | None:
    """The trained model inside the package, or None when it has not been built yet."""
    path = Path(str(resources.files("metasrgan") / "weights" / SHIPPED_MODEL))
    return path if path.is_file() else None


def load(model: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model file, or the shipped model when ``model`` is None.

    Without a shipped model this returns an *untrained* Meta-SRGAN and warns loudly, so
    that plumbing can be exercised before training.
    """
    from metasrgan.checkpoint import load_model
    from metasrgan.registry import make

    path = Path(model) if model else shipped_model_path()
    if path is None:
        warnings.warn(
            "no trained model is shipped in this install: using an UNTRAINED Meta-SRGAN "
            "(outputs are meaningless); train one or pass --model",
            UntrainedModelWarning,
            stacklevel=2,
        )
        net = make({"name": "meta-srgan", "args": {"skip": "bicubic", "norm": "none"}})
        net.metadata = {"untrained": True}  # type: ignore[attr-defined]
        return net.to(device, memory_format=torch.channels_last).eval()
    # channels-last weights: 1.5x faster convolutions on CPU too (benchmarks/README.md)
    return load_model(path, device).to(memory_format=torch.channels_last)


@torch.no_grad()
def upscale_tensor(
    model: nn.Module,
    x: torch.Tensor,
    scale,
    out_shape: tuple[int, int] | None = None,
    clamp: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """``[B, C, H, W]`` in [0, 1] -> upscaled, clamped to ``clamp`` (the paper clamps to the
    image range; pass the input's own range to keep values beyond [0, 1])."""
    scale = Scale2d.of(scale)
    scale.warn_if_untrained()
    rule = scale.out_shape(*x.shape[-2:])
    large = x.shape[-2] * x.shape[-1] > TILE_ABOVE_PIXELS
    if large and not model.training and tuple(out_shape or rule) == rule:
        from metasrgan.tiling import upscale_tiled

        y = upscale_tiled(model, x, scale, tile=256)  # bounded memory, equal to untiled
    else:
        y = model(x, scale, out_shape) if out_shape else model(x, scale)
    return y.clamp_(*clamp)


def upscale_image(
    model: nn.Module,
    image: np.ndarray,
    scale,
    out_shape: tuple[int, int] | None = None,
    intensity: IntensityMap | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Upscale a 2D array in any units; the result is float32 in the same units.

    ``intensity`` maps the image to [0, 1] (fitted on the image when None; pass one fitted
    on the whole volume for consistent slices).
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    intensity = intensity or IntensityMap.fit(image)
    device = device or next(iter(model.parameters())).device
    unit = intensity.apply(image, clip=False)
    x = torch.from_numpy(unit)[None, None].to(device)
    # nothing above the 99.5th percentile is lost: values stay in the input's own range
    y = upscale_tensor(model, x, scale, out_shape, clamp=(float(unit.min()), float(unit.max())))
    return intensity.invert(y[0, 0].cpu().numpy())
