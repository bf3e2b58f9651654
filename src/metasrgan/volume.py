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

from metasrgan.geometry import (
    check_affine,
    scaled_affine,
    spacing_of,
    stack_of_slices,
    through_plane_axis,
    volume_of_slices,
)
from metasrgan.intensity import IntensityMap
from metasrgan.scale import MAX_SCALE, MAX_SCALE_DENOMINATOR, AxisScale, Scale2d, parse_scale

BATCH_MEMORY_FRACTION = 0.25
"""Share of the available memory (host RAM, or free GPU memory) one batch of slices may use."""

BATCH_MEMORY_CAP = {"cpu": 128 << 20, "cuda": 8 << 30}
"""Largest working memory of one batch, whatever is available (bytes; other devices: the
CPU's).  On CPUs larger batches are no faster: 0.55-0.68 CPU-s per 240x240 slice at batch
1, 2, 4 and 8; and once freed memory is kept for reuse (:mod:`metasrgan.allocator`), a
240x240x155 volume at x2 took 20.1 s at batch 1 (this cap) against 21.1 s at batch 5
(512 MiB), with peak RSS 1,012 against 1,300 MiB.  So the host keeps its memory; on GPUs
batches fill the device."""

MAX_AUTO_BATCH = 64

TRAINED_SPACING_MM = (0.5, 1.0)
"""Voxel sizes of the data the shipped model learned from (Colin27/MNI152 at 1 mm)."""


@dataclass(frozen=True)
class VolumePlan:
    """What will be done to a volume: exact factor per axis and the in-plane axes."""

    factors: tuple[Fraction, Fraction, Fraction]
    in_plane: tuple[int, int]
    through: int
    in_shape: tuple[int, int, int]
    kept: tuple[str, ...] = ()
    """Notes on axes left as they are (already fine enough, or one voxel)."""

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return tuple(
            AxisScale(f.numerator, f.denominator).out_size(n)
            for f, n in zip(self.factors, self.in_shape, strict=True)
        )

    def notes(self) -> list[str]:
        out = list(self.kept)
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


def _plane_axes(
    shape: tuple[int, int, int], affine: np.ndarray, axes: tuple[int, int] | None
) -> tuple[int, int]:
    """The in-plane axes: ``axes`` if given, else all but :func:`through_plane_axis`."""
    if axes is not None:
        if len(axes) != 2 or len(set(axes)) != 2 or not all(0 <= a < 3 for a in axes):
            raise ValueError(f"--axes takes two different axes out of 0, 1, 2; got {axes}")
        return tuple(sorted(int(a) for a in axes))
    through = through_plane_axis(shape, affine)
    return tuple(a for a in range(3) if a != through)


def _spacing_factors(
    shape: tuple[int, int, int], zooms: tuple[float, ...], spacing
) -> tuple[list[Fraction], list[str]]:
    """Exact factors reaching ``spacing`` (mm, one or three); axes already at least as fine,
    or with one voxel, are kept.  Ratios are the nearest ``p/q`` with ``q`` at most
    :data:`~metasrgan.scale.MAX_SCALE_DENOMINATOR` (cost); the reached spacing is noted."""
    target = (spacing,) * 3 if np.isscalar(spacing) else tuple(spacing)
    if len(target) != 3 or not all(np.isfinite(t) and t > 0 for t in target):
        raise ValueError(f"--spacing must be one or three positive finite mm values: {spacing}")
    factors, kept = [], []
    for axis, (n, z, t) in enumerate(zip(shape, zooms, target, strict=True)):
        ratio = Fraction(z / t).limit_denominator(MAX_SCALE_DENOMINATOR)
        if n == 1 or ratio <= 1:
            if n == 1:
                kept.append(f"axis {axis}: one voxel: kept as it is")
            elif abs(z - t) > 1e-3 * t:
                kept.append(f"axis {axis}: kept at {z:g} mm (target {t:g} mm; this tool refines)")
            factors.append(Fraction(1))
            continue
        if ratio > MAX_SCALE:
            raise ValueError(
                f"--spacing {t:g} mm asks for x{float(ratio):g} on axis {axis} ({z:g} mm); "
                f"the largest factor is {MAX_SCALE}"
            )
        reached = z / float(ratio)
        if abs(reached - t) > 1e-3 * t:
            kept.append(
                f"axis {axis}: {z:g} mm / {ratio} = {reached:.4g} mm (nearest exact factor "
                f"with a denominator up to {MAX_SCALE_DENOMINATOR})"
            )
        factors.append(ratio)
    if all(f == 1 for f in factors):
        raise ValueError(
            f"--spacing {spacing}: the input's voxels {tuple(round(z, 4) for z in zooms)} mm "
            "are not coarser than that on any axis: this tool upsamples"
        )
    return factors, kept


def plan_volume(
    shape: tuple[int, ...],
    affine: np.ndarray,
    scale: float | str | Fraction | None = None,
    spacing: float | tuple[float, float, float] | None = None,
    axes: tuple[int, int] | None = None,
) -> VolumePlan:
    """Decide factors per axis from ``scale`` (in-plane) or ``spacing`` (every axis), before
    any voxel is read: ``shape`` and ``affine`` come from the header."""
    if len(shape) != 3:
        raise ValueError(
            f"expected a 3D volume, got shape {tuple(shape)}"
            + (" (4D: split the volumes first, e.g. with fslsplit)" if len(shape) == 4 else "")
        )
    if (scale is None) == (spacing is None):
        raise ValueError("give exactly one of --scale and --spacing for a volume")
    check_affine(affine)
    shape = tuple(int(n) for n in shape)
    zooms = spacing_of(affine)
    in_plane = _plane_axes(shape, affine, axes)
    through = ({0, 1, 2} - set(in_plane)).pop()
    kept: list[str] = []
    if scale is not None:
        f = parse_scale(scale, "--scale")
        factors = [Fraction(1)] * 3
        factors[in_plane[0]] = factors[in_plane[1]] = f
    else:
        factors, kept = _spacing_factors(shape, zooms, spacing)
    return VolumePlan(tuple(factors), in_plane, through, shape, tuple(kept))


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


def available_memory(device: torch.device) -> int:
    """Bytes a computation may still take: free GPU memory on CUDA, else the host's
    available memory (``MemAvailable``, through psutil)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def slice_working_bytes(model: nn.Module, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> int:
    """Working memory of one slice through the generator: about six feature maps alive at
    once (head, block input, two convolution outputs, a sum, the padded copy) and four
    output-sized buffers (phases, output, skip image, clamping) in float32."""
    from metasrgan.inference import TILE_ABOVE_PIXELS

    features = max((m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)),
                   default=64)  # fmt: skip
    pixels = min(in_hw[0] * in_hw[1], 2 * TILE_ABOVE_PIXELS)  # larger slices are tiled
    scale = out_hw[0] * out_hw[1] / max(1, in_hw[0] * in_hw[1])
    return 4 * (6 * features * pixels + 4 * int(pixels * scale))


def slice_batch(
    model: nn.Module, in_hw: tuple[int, int], out_hw: tuple[int, int], limit: int | None = None
) -> int:
    """Slices per forward pass: as many as fit in :data:`BATCH_MEMORY_FRACTION` of the
    available memory (at most :data:`BATCH_MEMORY_CAP`, :data:`MAX_AUTO_BATCH` slices,
    and ``limit`` when given), at least 1.  Memory then stays bounded whatever the
    volume's size; only the input and output volumes themselves grow with it."""
    device = next(iter(model.parameters())).device
    cap = BATCH_MEMORY_CAP.get(device.type, BATCH_MEMORY_CAP["cpu"])
    budget = min(cap, int(BATCH_MEMORY_FRACTION * available_memory(device)))
    fits = budget // max(1, slice_working_bytes(model, in_hw, out_hw))
    return int(max(1, min(fits, MAX_AUTO_BATCH, limit or MAX_AUTO_BATCH)))


@torch.no_grad()
def _pass_statistics(
    model: nn.Module,
    moved: np.ndarray,
    intensity: IntensityMap,
    acquisition: str | None,
    thinned: tuple[bool, bool],
) -> tuple[float | None, tuple[float, float] | None]:
    """One noise level and one pair of calibration gains for a pass over a stack of slices (they
    belong to the acquisition, not to a slice; one value keeps the slices consistent):
    the median of the noise estimates on up to 32 evenly spaced slices with anatomy, and
    the gains fitted on every fourth of them at once (summed least-squares terms; 8 slices
    cost about 4 of the pass).  None for models without them."""
    from metasrgan.inference import model_uses_noise
    from metasrgan.models.calibration import gain_from

    uses_noise = model_uses_noise(model)
    calibrates = getattr(model, "self_calibrate", False)
    if not (uses_noise or calibrates):
        return None, None
    picks = np.unique(np.linspace(0, len(moved) - 1, min(len(moved), 32)).round().astype(int))
    picks = [i for i in picks if np.ptp(moved[i]) > 0]
    if not picks:
        return (0.0 if uses_noise else None), ((1.0, 1.0) if calibrates else None)
    unit = np.ascontiguousarray(intensity.apply(moved[picks], clip=False), dtype=np.float32)
    device = next(iter(model.parameters())).device
    images = [torch.from_numpy(u)[None, None].to(device) for u in unit]
    noise = None
    if uses_noise:
        noise = float(torch.cat([model.noise_level(x) for x in images]).median())
    if not calibrates:
        return noise, None
    # one slice at a time: slices over 256 pixels are fitted on a window around their own centroid
    terms = sum(model.calibration_terms(x, acquisition, noise, thinned) for x in images[::4])
    return noise, tuple(float(g) for g in gain_from(terms).reshape(2))


def _slices_upscale(
    model: nn.Module,
    data: np.ndarray,
    axis: int,
    factors: tuple[Fraction, Fraction],
    intensity: IntensityMap,
    batch: int | None,
    progress: Callable | None,
    acquisition: str | None,
    skip_background: bool = True,
    ensemble: bool = False,
) -> np.ndarray:
    """Upscale every 2D slice of ``data`` taken along ``axis`` by (factors[0], factors[1])."""
    from metasrgan.background import BackgroundSkip
    from metasrgan.inference import upscale_tensor

    device = next(iter(model.parameters())).device
    moved = stack_of_slices(data, axis)
    scale = Scale2d(
        AxisScale(factors[0].numerator, factors[0].denominator),
        AxisScale(factors[1].numerator, factors[1].denominator),
    )
    out_hw = scale.out_shape(*moved.shape[1:])
    out = np.empty((moved.shape[0], *out_hw), dtype=np.float32)
    batch = slice_batch(model, moved.shape[1:], out_hw, batch)
    thinned = (factors[0] > 1, factors[1] > 1)
    noise, gains = _pass_statistics(model, moved, intensity, acquisition, thinned)
    background = (BackgroundSkip(model, scale, acquisition, noise, gains)
                  if skip_background else None)  # fmt: skip
    lo, hi = (
        float(intensity.apply(data.min(), clip=False)),
        float(intensity.apply(data.max(), clip=False)),
    )
    for start in range(0, moved.shape[0], batch):
        chunk = intensity.apply(moved[start : start + batch], clip=False)
        x = torch.from_numpy(np.ascontiguousarray(chunk))[:, None].to(device)
        y = upscale_tensor(model, x, scale, out_hw, clamp=(lo, hi), acquisition=acquisition,
                           background=background, noise=noise, gains=gains,
                           ensemble=ensemble)  # fmt: skip
        out[start : start + batch] = intensity.invert(y[:, 0].cpu().numpy())
        if progress is not None:
            progress(len(chunk))
    return volume_of_slices(out, axis)


def volume_passes(plan: VolumePlan) -> list[tuple[int, tuple[Fraction, Fraction], bool]]:
    """The 2D passes that carry out ``plan``: ``(slicing axis, factors of the two remaining
    axes in their order, through_plane)``.  In-plane factors go slice by slice; a
    through-plane factor then runs on the perpendicular slices as a ``(1, s)``-type scale."""
    a, b = plan.in_plane
    t = plan.through
    f = plan.factors
    work = [(t, (f[a], f[b]), False)] if (f[a] > 1 or f[b] > 1) else []
    if f[t] > 1:
        rest = [x for x in range(3) if x != a]
        work.append((a, tuple(f[t] if x == t else Fraction(1) for x in rest), True))
    if not work:
        raise ValueError("every factor is 1: nothing to do")
    return work


@torch.inference_mode()
def upscale_volume(
    model: nn.Module,
    data: np.ndarray,
    affine: np.ndarray,
    plan: VolumePlan,
    batch: int | None = None,
    progress: bool = True,
    acquisition: str | None = "auto",
    skip_background: bool = True,
    ensemble: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``plan`` on ``data`` ``[X, Y, Z]`` (any units); returns the upscaled float32
    volume in the same units and its affine (see the module docstring for the geometry).

    ``batch``: the most slices per forward pass; the batch is sized from the available
    memory (:func:`slice_batch`) and never exceeds it.  ``skip_background``: compute only
    what the anatomy reaches where the background is exactly constant (skull-stripped
    scans; same output, see :mod:`metasrgan.background`).  ``ensemble``: each slice is the
    mean of its flipped and transposed copies' upscales (:mod:`metasrgan.ensemble`).

    ``acquisition`` (``auto``, ``kspace``, ``bicubic``...) is what in-plane passes tell models
    that take one; through-plane passes say ``thick`` (:func:`~metasrgan.inference.
    model_acquisition`).  Raises ``ValueError`` for NaN/Inf input and
    :class:`~metasrgan.inference.NonFiniteOutputError` for a NaN/Inf output.
    """
    from metasrgan.inference import model_acquisition

    if batch is not None and batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    check_affine(affine)
    data = np.asarray(data, dtype=np.float32)
    if tuple(data.shape) != tuple(plan.in_shape):
        raise ValueError(f"the volume has shape {data.shape}, the plan {plan.in_shape}")
    if not np.isfinite(data).all():
        raise ValueError("the volume contains NaN or Inf values")
    intensity = IntensityMap.fit(data)
    work = volume_passes(plan)
    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(plan.in_shape[axis] if i == 0 else plan.out_shape[axis]
                    for i, (axis, _, _) in enumerate(work))  # fmt: skip
        bar = tqdm(total=total, unit="slice", desc="upscaling", dynamic_ncols=True)
    out = data
    try:
        for axis, pair, through in work:
            acq = model_acquisition(model, acquisition, through_plane=through)
            out = _slices_upscale(model, out, axis, pair, intensity, batch,
                                  bar.update if bar else None, acq, skip_background,
                                  ensemble)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    new_affine = scaled_affine(affine, tuple(float(x) for x in plan.factors))
    return out.astype(np.float32, copy=False), new_affine
