"""Geometric self-ensemble: the mean of the upscales of a slice's flipped and transposed
copies, each turned back (EDSR's "+" models; Lim et al., CVPR Workshops 2017).

Interpolation kernels are symmetric, so a classical method gives the same image whichever
way the slice is turned; a network's guess of the missing frequencies is not, and part of
its error changes sign with the orientation.  Averaging the eight orientations (the two
flips, and the transpose when both axes get the same factor; four otherwise) cancels that
part.  Each copy goes through the whole pipeline (skip, data consistency, calibration,
background skipping, tiling), so what the pipeline guarantees per copy (the acquired band
kept, the input's range) holds for the mean, which is linear.

Measured on the acquisition benchmark's unseen scans (``benchmarks/README.md``,
"Self-ensemble"); it costs one upscale per orientation, so it is off by default.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from metasrgan.scale import Scale2d

Orientation = tuple[bool, tuple[int, ...]]
"""Transpose first or not, then the spatial dimensions to flip."""

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def orientations(scale) -> list[Orientation]:
    """The orientations averaged for ``scale``: eight when both axes get the same factor,
    else the four flips (a transpose would swap the factors between the axes)."""
    s = Scale2d.of(scale)
    turns = (False, True) if s.h.value == s.w.value else (False,)
    return [(t, f) for t in turns for f in FLIPS]


def _turn(x: torch.Tensor, orientation: Orientation) -> torch.Tensor:
    transpose, flips = orientation
    x = x.transpose(-2, -1) if transpose else x
    return x.flip(flips) if flips else x


def _turn_back(y: torch.Tensor, orientation: Orientation) -> torch.Tensor:
    transpose, flips = orientation
    y = y.flip(flips) if flips else y
    return y.transpose(-2, -1) if transpose else y


def self_ensemble(
    upscale: Callable[[torch.Tensor, tuple[int, int] | None], torch.Tensor],
    x: torch.Tensor,
    scale,
    out_shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The mean over :func:`orientations` of ``upscale(turned x, turned out_shape)``, each
    turned back.  ``upscale(x, out_shape)`` upscales ``[B, C, H, W]`` by ``scale`` (None:
    the size rule); the sum is kept in float32 or wider."""
    total = None
    turns = orientations(scale)
    for orientation in turns:
        shape = out_shape
        if orientation[0] and out_shape is not None:
            shape = (out_shape[1], out_shape[0])
        y = _turn_back(upscale(_turn(x, orientation).contiguous(), shape), orientation)
        y = y.to(torch.promote_types(y.dtype, torch.float32))
        total = y.clone() if total is None else total.add_(y)
    return total.div_(len(turns))
