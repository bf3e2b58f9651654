"""Whole volumes through a 2D network: slice-wise in-plane, or to a target voxel size.

Geometry: on an axis upscaled by ``s = p/q`` the network's output voxel ``j`` sits at input
continuous index ``(j + 0.5) / s - 0.5`` (pixel centres aligned, as the bicubic degradation
it was trained on), so the new affine is ``A @ T`` with ``T[:3, :3] = diag(1/s)`` and
``T[:3, 3] = 0.5 * (1/s - 1)``: rotations and shears are kept (columns are scaled).  The axis
has ``floor(n * s)`` voxels; when ``n * s`` is not an integer the field of view ends less than
one output voxel short of the input's, and :func:`plan_volume` says so.
(nibabel's ``rescale_affine`` is not used: it shifts images by a fraction of a voxel.)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from torch import nn

from metasrgan.intensity import IntensityMap
from metasrgan.scale import AxisScale, Scale2d, as_fraction

TRAINED_SPACING_MM = (0.5, 1.0)
"""Voxel sizes of the data the shipped model learned from (Colin27/MNI152 at 1 mm)."""


def scaled_affine(affine: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    """The affine of a grid refined by ``factors`` per voxel axis, same field of view origin."""
    t = np.eye(4)
    inv = 1.0 / np.asarray(factors, dtype=np.float64)
    t[:3, :3] = np.diag(inv)
    t[:3, 3] = 0.5 * (inv - 1.0)
    return np.asarray(affine, dtype=np.float64) @ t


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each voxel axis: the lengths of the affine's columns."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


@dataclass(frozen=True)
class VolumePlan:
    """What will be done to a volume: exact factor per axis and the in-plane axes."""

    factors: tuple[Fraction, Fraction, Fraction]
    in_plane: tuple[int, int]
    through: int
    in_shape: tuple[int, int, int]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return tuple(
            AxisScale(f.numerator, f.denominator).out_size(n)
            for f, n in zip(self.factors, self.in_shape, strict=True)
        )

    def notes(self) -> list[str]:
        out = []
        for axis, (f, n, m) in enumerate(
            zip(self.factors, self.in_shape, self.out_shape, strict=True)
        ):
            exact = n * f
            if exact.denominator != 1:
                out.append(
                    f"axis {axis}: {n} x {float(f):g} = {float(exact):.2f} is not an integer; "
                    f"{m} voxels are written and the field of view ends "
                    f"{float(exact - m):.2f} output voxels short"
                )
        return out


def plan_volume(
    shape: tuple[int, ...],
    affine: np.ndarray,
    scale: float | None = None,
    spacing: float | tuple[float, float, float] | None = None,
    axes: tuple[int, int] | None = None,
) -> VolumePlan:
    """Decide factors per axis from ``--scale`` (in-plane) or ``--spacing`` (every axis)."""
    if len(shape) != 3:
        raise ValueError(
            f"expected a 3D volume, got shape {tuple(shape)}"
            + (" (4D: split the volumes first, e.g. with fslsplit)" if len(shape) == 4 else "")
        )
    if (scale is None) == (spacing is None):
        raise ValueError("give exactly one of --scale and --spacing for a volume")
    zooms = spacing_of(affine)
    if not all(np.isfinite(zooms)) or min(zooms) <= 1e-6:
        raise ValueError(f"broken header: voxel sizes {zooms} (the affine is singular)")
    if axes is not None:
        if len(set(axes)) != 2 or not all(0 <= a < 3 for a in axes):
            raise ValueError(f"--axes takes two different axes out of 0, 1, 2; got {axes}")
        in_plane = tuple(sorted(axes))
    else:
        # the through-plane axis has the largest spacing (ties: the last axis)
        through_axis = max(range(3), key=lambda a: (round(zooms[a], 4), a))
        in_plane = tuple(a for a in range(3) if a != through_axis)
    through = ({0, 1, 2} - set(in_plane)).pop()
    if scale is not None:
        f = as_fraction(scale)
        factors = [Fraction(1)] * 3
        factors[in_plane[0]] = factors[in_plane[1]] = f
    else:
        target = (spacing,) * 3 if np.isscalar(spacing) else tuple(spacing)
        if any(t <= 0 for t in target):
            raise ValueError(f"--spacing must be positive, got {spacing}")
        factors = []
        for z, t in zip(zooms, target, strict=True):
            ratio = Fraction(z / t).limit_denominator(100)
            if ratio < 1:
                raise ValueError(
                    f"--spacing {t:g} mm is coarser than the input's {z:g} mm: this tool upsamples"
                )
            factors.append(ratio)
    return VolumePlan(tuple(factors), in_plane, through, tuple(shape))


def check_spacing(affine: np.ndarray) -> None:
    """Warn when voxels are far from what the model was trained on."""
    zooms = spacing_of(affine)
    lo, hi = TRAINED_SPACING_MM
    if min(zooms) < lo / 2 or max(zooms) > hi * 8:
        warnings.warn(
            f"voxel sizes {tuple(round(z, 3) for z in zooms)} mm are far from the "
            f"{lo:g}-{hi:g} mm the model was trained on; check the output",
            stacklevel=2,
        )


def _slices_upscale(
    model: nn.Module,
    data: np.ndarray,
    axis: int,
    factors: tuple[Fraction, Fraction],
    intensity: IntensityMap,
    device: torch.device,
    batch: int,
    progress: Callable | None,
) -> np.ndarray:
    """Upscale every 2D slice of ``data`` taken along ``axis`` by (factors[0], factors[1])."""
    from metasrgan.inference import upscale_tensor

    moved = np.moveaxis(data, axis, 0)
    scale = Scale2d(
        AxisScale(factors[0].numerator, factors[0].denominator),
        AxisScale(factors[1].numerator, factors[1].denominator),
    )
    out_hw = scale.out_shape(*moved.shape[1:])
    out = np.empty((moved.shape[0], *out_hw), dtype=np.float32)
    lo, hi = (
        float(intensity.apply(data.min(), clip=False)),
        float(intensity.apply(data.max(), clip=False)),
    )
    for start in range(0, moved.shape[0], batch):
        chunk = intensity.apply(moved[start : start + batch], clip=False)
        x = torch.from_numpy(np.ascontiguousarray(chunk))[:, None].to(device)
        y = upscale_tensor(model, x, scale, out_hw, clamp=(lo, hi))
        out[start : start + batch] = intensity.invert(y[:, 0].cpu().numpy())
        if progress is not None:
            progress(len(chunk))
    return np.moveaxis(out, 0, axis)


def upscale_volume(
    model: nn.Module,
    data: np.ndarray,
    affine: np.ndarray,
    plan: VolumePlan,
    batch: int = 1,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``plan`` on ``data``; returns the upscaled volume in the input's units and its affine.

    In-plane factors are applied slice by slice; a through-plane factor > 1 is then applied on
    the perpendicular slices with a (1, factor) asymmetric scale.
    """
    data = np.asarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        raise ValueError("the volume contains NaN or Inf values")
    intensity = IntensityMap.fit(data)
    device = next(iter(model.parameters())).device
    a, b = plan.in_plane
    t = plan.through
    f = plan.factors
    # each pass: (slicing axis, factors of the two remaining axes in their order)
    work = [(t, (f[a], f[b]))] if (f[a] > 1 or f[b] > 1) else []
    if f[t] > 1:
        rest = [x for x in range(3) if x != a]
        work.append((a, tuple(f[t] if x == t else Fraction(1) for x in rest)))
    if not work:
        raise ValueError("every factor is 1: nothing to do")
    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(plan.in_shape[axis] if i == 0 else plan.out_shape[axis]
                    for i, (axis, _) in enumerate(work))  # fmt: skip
        bar = tqdm(total=total, unit="slice", desc="upscaling", dynamic_ncols=True)
    out = data
    for axis, pair in work:
        out = _slices_upscale(model, out, axis, pair, intensity, device, batch,
                              bar.update if bar else None)  # fmt: skip
    if bar is not None:
        bar.close()
    new_affine = scaled_affine(affine, tuple(float(x) for x in f))
    return out.astype(np.float32), new_affine
