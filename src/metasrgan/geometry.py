"""Volume geometry without torch: the affine of an upscaled grid, voxel sizes, affine checks,
and the one rule for cutting a volume into 2D slices.

On an axis upscaled by ``s = p/q`` output voxel ``j`` sits at input continuous index
``(j + 0.5) / s - 0.5`` (pixel centres aligned), so the new affine is ``A @ T`` with
``T[:3, :3] = diag(1/s)`` and ``T[:3, 3] = 0.5 * (1/s - 1)``; rotations and shears are kept.
(nibabel's ``rescale_affine`` is not used: it shifts images by a fraction of a voxel.)
Readers, headers, the viewer, training and inference all use these functions.
"""

from __future__ import annotations

import numpy as np


def scaled_affine(affine: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    """The affine of a grid refined by ``factors`` per voxel axis, same field of view origin."""
    t = np.eye(4)
    inv = 1.0 / np.asarray(factors, dtype=np.float64)
    t[:3, :3] = np.diag(inv)
    t[:3, 3] = 0.5 * (inv - 1.0)
    return np.asarray(affine, dtype=np.float64) @ t


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each voxel axis: the lengths of the affine's columns.

    The one spacing rule of the project (a header's pixdim can disagree with its affine;
    the affine is what places voxels in space).
    """
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def check_affine(affine: np.ndarray, where: str = "") -> None:
    """Refuse affines that cannot place voxels: not 4x4, NaN/Inf, or singular (a zero or
    collapsed column: writing on them would give an output that overlays nothing)."""
    prefix = f"{where}: " if where else ""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"{prefix}broken header: the affine has shape {a.shape}, not 4x4")
    if not np.isfinite(a).all():
        raise ValueError(f"{prefix}broken header: the affine has NaN or Inf entries")
    zooms = spacing_of(a)
    singular = np.linalg.svd(a[:3, :3], compute_uv=False)
    if min(zooms) <= 1e-6 or singular[-1] <= 1e-6 * singular[0]:
        raise ValueError(
            f"{prefix}broken header: voxel sizes {tuple(round(z, 6) for z in zooms)} mm, "
            f"the affine is singular (rank {int(np.sum(singular > 1e-6 * singular[0]))})"
        )


def through_plane_axis(shape: tuple[int, ...], affine: np.ndarray | None) -> int:
    """The one orientation rule for cutting a volume into 2D slices: the axis they are
    stacked along.

    A one-voxel axis (a single slice keeps its geometry whatever axis it lies on); else the
    axis with the largest spacing (the thick axis of an anisotropic scan, as ECLARE picks
    it); ties, as in isotropic scans, go to the axis closest to the scanner's
    inferior-superior direction (axial slices, what training sees), and to the last axis
    without an affine.
    """
    singles = [a for a in range(3) if shape[a] == 1]
    if singles:
        return singles[-1]
    if affine is None:
        return 2
    zooms = spacing_of(affine)
    thickest = max(round(z, 4) for z in zooms)
    tied = [a for a in range(3) if round(zooms[a], 4) == thickest]
    axial = int(np.argmax(np.abs(np.asarray(affine)[2, :3])))
    return axial if axial in tied else tied[-1]


def stack_of_slices(volume: np.ndarray, axis: int) -> np.ndarray:
    """The 2D slices of ``volume`` along ``axis`` as ``[n, a, b]`` (a view: the two other
    axes in their order); :func:`volume_of_slices` puts them back."""
    return np.moveaxis(volume, axis, 0)


def volume_of_slices(stack: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of :func:`stack_of_slices`."""
    return np.moveaxis(stack, 0, axis)
