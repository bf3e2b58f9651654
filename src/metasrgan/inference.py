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

from metasrgan.api.options import UsageError, check_device
from metasrgan.intensity import IntensityMap
from metasrgan.scale import Scale2d

SHIPPED_MODEL = "metasrgan-mri.safetensors"
THROUGH_PLANE_MAX = 6.0
"""Largest through-plane factor the shipped model trained on (thick slices, (s, 1) scales)."""
TILE_ABOVE_PIXELS = 512 * 512
"""Inputs larger than this are upscaled in tiles (same result, bounded memory)."""


class UntrainedModelWarning(UserWarning):
    pass


class NonFiniteOutputError(ValueError):
    """The model produced NaN or Inf: an error, never a file."""


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; anything
    else, or a device this machine lacks, is a :class:`~metasrgan.api.UsageError`."""
    name = check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but no CUDA GPU is available")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps was asked for, but MPS is not available")
    return torch.device(name)


def model_acquisition(
    model: nn.Module, requested: str | None = "auto", through_plane: bool = False
) -> str | None:
    """The ``acquisition`` keyword to pass to ``model``, or None for models without one.

    Models list what they know in ``model.acquisitions`` (empty or absent on older models,
    which get no keyword).  Through-plane passes (slices upscaled along the thick axis) use
    ``"thick"`` when the model knows it; other passes the request, ``auto`` meaning
    ``model.default_acquisition``.
    """
    known = tuple(getattr(model, "acquisitions", ()) or ())
    if not known:
        return None
    if through_plane and "thick" in known:
        return "thick"
    if requested in (None, "auto"):
        return getattr(model, "default_acquisition", None) or known[0]
    if requested not in known:
        raise UsageError(
            f"--acquisition {requested!r}: this model knows {', '.join(known)} (or auto)"
        )
    return requested


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
    net = load_model(path, device).to(memory_format=torch.channels_last)
    net.source_path = path  # type: ignore[attr-defined]  # sidecars carry the file's SHA-256
    return net


@torch.no_grad()
def upscale_tensor(
    model: nn.Module,
    x: torch.Tensor,
    scale,
    out_shape: tuple[int, int] | None = None,
    clamp: tuple[float, float] = (0.0, 1.0),
    acquisition: str | None = None,
    background=None,
    noise: float | None = None,
    gains: tuple[float, float] | None = None,
    ensemble: bool = False,
) -> torch.Tensor:
    """``[B, C, H, W]`` in [0, 1] -> upscaled, clamped to ``clamp`` (the paper clamps to the
    image range; pass the input's own range to keep values beyond [0, 1]).

    ``background``: a :class:`~metasrgan.background.BackgroundSkip` for this scale and
    acquisition (volumes pass one): batches with an exactly constant background are then
    computed only where the anatomy reaches (same output).

    ``acquisition`` is passed to models that list acquisitions (see
    :func:`model_acquisition`); ``noise`` (one level for the whole batch, as a volume's) to
    noise-aware models, which otherwise estimate it on each image; ``gains`` likewise to
    self-calibrated ones (:meth:`MetaSRGAN.calibration_gains`).  Raises
    :class:`NonFiniteOutputError` when the model's output has NaN or Inf values.

    ``ensemble``: the mean of the upscales of the batch's flipped and transposed copies
    (:mod:`metasrgan.ensemble`; 4-9 times the time).
    """
    scale = Scale2d.of(scale)
    if ensemble:
        from metasrgan.ensemble import self_ensemble

        def one(x_turned: torch.Tensor, shape: tuple[int, int] | None) -> torch.Tensor:
            return upscale_tensor(model, x_turned, scale, shape, clamp, acquisition,
                                  background, noise, gains)  # fmt: skip

        return self_ensemble(one, x, scale, out_shape)
    extra = {"acquisition": acquisition} if acquisition and _knows_acquisitions(model) else {}
    if noise is not None and model_uses_noise(model):
        extra["noise"] = noise
    if gains is not None and getattr(model, "self_calibrate", False):
        extra["gains"] = gains
    # thick slices are trained with (s, 1) scales up to THROUGH_PLANE_MAX (configs/shipped.yaml)
    thick = extra.get("acquisition") == "thick"
    scale.warn_if_untrained(high=THROUGH_PLANE_MAX if thick else 4.0)
    rule = scale.out_shape(*x.shape[-2:])
    large = x.shape[-2] * x.shape[-1] > TILE_ABOVE_PIXELS
    rule_size = tuple(out_shape or rule) == rule
    # None: the batch is better run dense (or there is no background to skip)
    y = background(x) if background is not None and not large and rule_size else None
    if y is None and large and not model.training and rule_size:
        from metasrgan.tiling import upscale_tiled

        y = upscale_tiled(model, x, scale, tile=256, **extra)  # bounded memory, = untiled
    elif y is None:
        y = model(x, scale, out_shape, **extra) if out_shape else model(x, scale, **extra)
    if not torch.isfinite(y).all():
        raise NonFiniteOutputError(
            "the model's output has NaN or Inf values (a broken or diverged model file?); "
            "nothing is written"
        )
    return y.clamp_(*clamp)


def _knows_acquisitions(model: nn.Module) -> bool:
    return bool(getattr(model, "acquisitions", ()))


def model_uses_noise(model: nn.Module) -> bool:
    """Whether ``model`` takes a ``noise`` level (:attr:`MetaSRGAN.uses_noise`)."""
    return bool(getattr(model, "uses_noise", False))


@torch.inference_mode()
def upscale_image(
    model: nn.Module,
    image: np.ndarray,
    scale,
    out_shape: tuple[int, int] | None = None,
    intensity: IntensityMap | None = None,
    device: str | torch.device | None = None,
    acquisition: str | None = "auto",
    ensemble: bool = False,
) -> np.ndarray:
    """Upscale a 2D array ``[H, W]`` in any units; the result is float32 in the same units.

    ``intensity`` maps the image to [0, 1] (fitted on the image when None; pass one fitted
    on the whole volume for consistent slices).  ``out_shape`` overrides the size rule
    (the scale must then be the exact size ratio).
    ``ensemble``: see :func:`upscale_tensor`.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    intensity = intensity or IntensityMap.fit(image)
    device = device or next(iter(model.parameters())).device
    unit = intensity.apply(image, clip=False)
    x = torch.from_numpy(unit)[None, None].to(device)
    # nothing above the 99.5th percentile is lost: values stay in the input's own range
    clamp = (float(unit.min()), float(unit.max()))
    acq = model_acquisition(model, acquisition)
    y = upscale_tensor(model, x, scale, out_shape, clamp=clamp, acquisition=acq, ensemble=ensemble)
    return intensity.invert(y[0, 0].cpu().numpy())
