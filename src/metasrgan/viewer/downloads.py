"""Downloads: one zoomed slice as NIfTI (placed in space), the whole volume upscaled.

A slice of the RAS-ordered volume is written as a one-voxel-thick volume whose affine is the
volume's, shifted to the slice and refined along the two in-plane axes by
:func:`metasrgan.geometry.scaled_affine` (the project's one affine rule), so it overlays on the
scan in any viewer.  The whole volume goes through :func:`metasrgan.api.upscale`, the same
path as ``metasrgan upscale``.
"""

from __future__ import annotations

import gzip

import numpy as np
from torch import nn

from metasrgan.geometry import scaled_affine
from metasrgan.scale import Scale2d
from metasrgan.viewer.volumes import AXIS_NAMES, VIEW_AXES, Volume


def _view_factors(volume: Volume, axis: str, scale: Scale2d) -> tuple[float, float, float]:
    """Refinement factor of each RAS voxel axis for the view's (vertical, horizontal) zoom."""
    factors = [1.0, 1.0, 1.0]
    view = VIEW_AXES[axis]
    factors[view["rows"]] = scale.h.value
    factors[view["cols"]] = scale.w.value
    return tuple(factors)


def slice_nifti(volume: Volume, axis: str, index: int, scale: Scale2d, unit: np.ndarray) -> bytes:
    """The zoomed slice ``unit`` (display orientation, [0, 1]) in the scan's units."""
    import nibabel as nib

    values = volume.intensity.invert(unit)
    if volume.affine is None:
        return _plain_nifti(volume, values, scale)
    through = AXIS_NAMES.index(axis)
    plane = np.expand_dims(np.rot90(values, -1), through)  # back to voxel order
    shift = np.eye(4)
    shift[through, 3] = index
    affine = scaled_affine(volume.affine @ shift, _view_factors(volume, axis, scale))
    return _nifti_gz(nib.Nifti1Image(np.ascontiguousarray(plane, dtype=np.float32), affine))


def _nifti_gz(image) -> bytes:
    image.set_sform(image.affine, code=1)
    image.set_qform(image.affine, code=1)
    return gzip.compress(image.to_bytes(), compresslevel=1)


def _plain_nifti(volume: Volume, values: np.ndarray, scale: Scale2d) -> bytes:
    """A plain image (rows down, columns across) as a NIfTI ``[column, row, 1]``."""
    import nibabel as nib

    sp_h, sp_w = volume.view_spacing("axial")
    affine = np.diag([sp_w / scale.w.value, sp_h / scale.h.value, 1.0, 1.0])
    plane = np.ascontiguousarray(np.asarray(values, dtype=np.float32).T)[:, :, None]
    return _nifti_gz(nib.Nifti1Image(plane, affine))


def upscaled_volume(model: nn.Module, volume: Volume, axis: str, scale: Scale2d) -> bytes:
    """The whole volume upscaled in the view's plane (the view's two factors), as .nii.gz,
    by the network the panels show (``adapt=0``: what the user saw, in the time of a click;
    ``metasrgan upscale`` adapts clean k-space scans to themselves first)."""
    import nibabel as nib

    from metasrgan.api import upscale

    if volume.affine is None:
        out = upscale(volume.data, scale=(scale.h.value, scale.w.value), model=model, adapt=0)
        return _plain_nifti(volume, out, scale)
    view = VIEW_AXES[axis]
    spacing = [
        float(s) / f
        for s, f in zip(volume.spacing, _view_factors(volume, axis, scale), strict=True)
    ]
    axes = tuple(sorted((view["rows"], view["cols"])))
    image = nib.Nifti1Image(np.asarray(volume.data, dtype=np.float32), volume.affine)
    return _nifti_gz(upscale(image, spacing=tuple(spacing), axes=axes, model=model, adapt=0))
