"""Tiled inference: any image size in bounded memory, with output equal to untiled output.

Why it can be exact: every output pixel of the generator depends only on LR pixels within a
finite radius of the pixel it reads (:func:`receptive_radius`: 4 for the 9x9 head, 1 per
3x3 convolution, 1 for the Meta-Upscale neighbourhood: 16 for the paper's network).  A tile
whose LR window reaches that far beyond its core reproduces the core exactly, provided the
tile's phase pattern is the image's: core origins are multiples of ``q`` (for ``s = p/q``),
so output origins ``origin * p / q`` are integers and output pixel ``o + i`` of a tile reads
LR pixel ``origin + floor(i * q / p)`` with the same fractional offset as in the whole image.

Two things are not local and are handled here:

- batch norm in training mode normalises with the tile's own statistics: tiling needs
  ``model.eval()`` (checked);
- the global steps of residual models (the skip: bicubic resizes with the ratio
  ``H / H_out``, which differs from ``q / p`` when ``H * s`` is not an integer, the
  zero-filled sinc reads the whole image; data consistency's FFT; the noise estimate):
  models that split their forward pass into ``combine(x, residual(extract_features(x)))``
  (:class:`~metasrgan.models.MetaSRGAN`) get only the local residual per tile, with the
  whole image's noise level, and ``combine`` once on the whole image (cheap, output-sized),
  which is exact for every skip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metasrgan.models.meta_upscale import MetaUpscale
from metasrgan.scale import AxisScale, Scale2d


def receptive_radius(model: nn.Module) -> int:
    """LR pixels of context an output pixel needs beyond the LR pixel it reads.

    The sum of every convolution's reach (``dilation * (k - 1) / 2``) plus the Meta-Upscale
    neighbourhood: exact for networks whose convolutions are all on one path (SRResNet-style
    residual blocks and skips add no reach), an upper bound otherwise (safe: more overlap).
    """
    from metasrgan.models.blocks import NoiseEstimator

    # the noise estimator reads the whole image once (passed to every tile): not local
    global_parts = {id(m) for e in model.modules() if isinstance(e, NoiseEstimator)
                    for m in e.modules()}  # fmt: skip
    radius = 0
    for module in model.modules():
        if id(module) in global_parts:
            continue
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            dh, dw = module.dilation
            radius += max(dh * (kh - 1), dw * (kw - 1)) // 2
        elif isinstance(module, MetaUpscale):
            radius += module.kernel_size // 2
    return radius


@dataclass(frozen=True)
class AxisTile:
    """One tile along one axis: LR window ``[start, stop)`` and the output it contributes.

    ``out_start:out_stop`` is where the core lands in the whole output; ``local_start`` is
    where that core begins inside the window's own output.
    """

    start: int
    stop: int
    out_start: int
    out_stop: int
    local_start: int


def plan_axis(n: int, axis: AxisScale, tile: int, halo: int) -> list[AxisTile]:
    """Split ``n`` LR pixels into cores of ``~tile`` pixels (multiples of ``q``) plus halos."""
    if tile < 1:
        raise ValueError(f"tile must be a positive number of LR pixels, got {tile}")
    step = max(axis.q, tile // axis.q * axis.q)
    n_out = axis.out_size(n)
    tiles = []
    for core in range(0, n, step):
        core_stop = min(n, core + step)
        start = max(0, (core - halo) // axis.q * axis.q)  # a multiple of q: same phases
        stop = min(n, core_stop + halo)
        out_start = core * axis.p // axis.q  # exact: core is a multiple of q
        out_stop = n_out if core_stop == n else core_stop * axis.p // axis.q
        tiles.append(
            AxisTile(start, stop, out_start, out_stop, out_start - start * axis.p // axis.q)
        )
    return tiles


@torch.no_grad()
def upscale_tiled(
    model: nn.Module,
    x: torch.Tensor,
    scale,
    out_shape: tuple[int, int] | None = None,
    tile: int = 128,
    overlap: int | None = None,
    progress: bool = False,
    acquisition: str | None = None,
    noise=None,
    gains=None,
) -> torch.Tensor:
    """Upscale ``x`` (``[B, C, H, W]`` in [0, 1]) tile by tile; equals ``model(x, scale)``.

    Args:
        model: an arbitrary-scale generator in eval mode (``model(x, scale, out_shape)``).
        scale: a number, ``(s_h, s_w)`` or :class:`~metasrgan.scale.Scale2d`.
        out_shape: must be the size rule's ``(floor(H * s_h), floor(W * s_w))`` if given.
        tile: core size in LR pixels (rounded down to a multiple of the scale's ``q``);
            memory grows with ``(tile + 2 * overlap)^2``.
        overlap: LR pixels of context around each core; default (and minimum) the model's
            :func:`receptive_radius`.
        progress: show a progress bar over tiles.
        acquisition: passed on to models that take one (``model.acquisitions``).
        noise: the noise level for noise-aware models (default: estimated on each image).
        gains: the calibration gains for self-calibrated models (default: fitted on each
            whole image, once).

    Returns the unclamped output ``[B, C, H_out, W_out]`` (clamp it as ``upscale_tensor`` does).
    """
    if x.dim() != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}")
    if model.training:
        raise ValueError(
            "tiled inference needs model.eval(): batch norm in training mode normalises each "
            "tile with its own statistics, so tiles would not match the whole image"
        )
    scale = Scale2d.of(scale)
    height, width = x.shape[-2:]
    rule = scale.out_shape(height, width)
    if out_shape is not None and tuple(out_shape) != rule:
        raise ValueError(
            f"tiled inference supports the size rule only: {height}x{width} at "
            f"{scale.values} gives {rule}, not {tuple(out_shape)}"
        )
    radius = receptive_radius(model)
    if overlap is None:
        overlap = radius
    elif overlap < radius:
        raise ValueError(
            f"overlap {overlap} is below the model's receptive radius {radius} LR pixels: "
            "tiles would differ from the whole image along their borders"
        )
    rows = plan_axis(height, scale.h, tile, overlap)
    cols = plan_axis(width, scale.w, tile, overlap)
    split = has_split_forward(model)
    extra = {"acquisition": acquisition} if acquisition else {}
    if split:  # the whole image's noise level, not each tile's
        noise = model.noise_level(x, noise)
    else:
        extra.update({k: v for k, v in (("noise", noise), ("gains", gains)) if v is not None})
    out = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows) * len(cols), unit="tile", desc="tiles", dynamic_ncols=True)
    for r in rows:
        for c in cols:
            window = x[:, :, r.start : r.stop, c.start : c.stop]
            if split:  # the local part only; the global skip is added once below
                y = model.residual(
                    model.extract_features(window, noise), scale,
                    scale.out_shape(*window.shape[-2:]), acquisition,
                )  # fmt: skip
            else:
                y = model(window, scale, **extra)
            if out is None:
                out = y.new_empty(*y.shape[:2], *rule)
            out[:, :, r.out_start : r.out_stop, c.out_start : c.out_stop] = y[
                :,
                :,
                r.local_start : r.local_start + r.out_stop - r.out_start,
                c.local_start : c.local_start + c.out_stop - c.out_start,
            ]
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return model.combine(x, out, rule, acquisition, noise, gains) if split else out


def has_split_forward(model: nn.Module) -> bool:
    """Whether ``model`` computes ``combine(x, residual(extract_features(x)))``: a local
    residual, then a global step (the skip image; data consistency) on the whole image."""
    names = ("noise_level", "extract_features", "residual", "combine")
    return all(hasattr(model, name) for name in names)
