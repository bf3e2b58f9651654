"""The in-memory API: load a model, plan an upscaling, run it on arrays, tensors or images.

One place decides what an input is and what happens to it (:func:`plan_upscale`): a 2D
image is upscaled by a scale or to a size; a volume (3D with an affine) slice-wise in-plane
by a scale or on every axis to a spacing (:mod:`metasrgan.volume`).  Files
(:mod:`metasrgan.api.files`), the CLI and the viewer build on it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

from metasrgan.api.options import Request, UsageError, check_voxels, size_factors
from metasrgan.scale import AxisScale, Scale2d
from metasrgan.volume import VolumePlan, check_affine, check_spacing, plan_volume, scaled_affine


def load_model(name_or_path: str | os.PathLike | None = None, device: str = "auto") -> nn.Module:
    """A model ready for inference (eval mode, on ``device``).

    Args:
        name_or_path: None or ``"shipped"`` for the model shipped in the package, or the path
            of a model file (``.safetensors`` with its JSON spec; never unpickled).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    """
    from metasrgan import inference

    target = inference.pick_device(device)
    if name_or_path is None or str(name_or_path) == "shipped":
        return inference.load(None, target)
    path = Path(name_or_path)
    if not path.is_file():
        raise UsageError(f"--model {path}: no such model file (give a .safetensors or 'shipped')")
    return inference.load(path, target)


def _as_model(model) -> nn.Module:
    return model if isinstance(model, nn.Module) else load_model(model)


@dataclass(frozen=True)
class UpscalePlan:
    """What will be done to one input, decided from its shape and affine alone.

    ``factors`` has one exact factor per axis of ``in_shape``; ``volume`` is set for
    volumes, ``scale2d`` (and ``size`` for ``--size``) for 2D images.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    factors: tuple[Fraction, ...]
    volume: VolumePlan | None = None
    scale2d: Scale2d | None = None
    size: tuple[int, int] | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def is_volume(self) -> bool:
        return self.volume is not None


def plan_upscale(
    shape: tuple[int, ...], affine: np.ndarray | None, request: Request, where: str = "input"
) -> UpscalePlan:
    """Check ``request`` against an input of ``shape`` (with ``affine`` for scans).

    Raises :class:`UsageError` when the request does not fit the input (``--size`` on a
    volume, a size below the input's, too many output voxels), ``ValueError`` when the
    input itself cannot be used (4D, broken affine, 3D without an affine).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) == 3 and affine is not None:
        return _plan_volume(shape, affine, request, where)
    if len(shape) == 3 and 1 in shape:  # one slice of a stack without geometry: a 2D image
        squeezed = tuple(n for n in shape if n != 1)
        if len(squeezed) != 2:
            raise ValueError(f"{where}: a stack of shape {shape} is not one 2D image")
        return _keep_singleton(_plan_image(squeezed, request, where), shape)
    if len(shape) == 3:
        raise ValueError(
            f"{where}: a volume without an affine cannot be resampled safely "
            "(save it as NIfTI with its affine, or pass affine=...)"
        )
    if len(shape) != 2:
        raise ValueError(
            f"{where}: expected a 2D image or 3D volume, got shape {shape}"
            + (" (4D: split the volumes first, e.g. with fslsplit)" if len(shape) == 4 else "")
        )
    return _plan_image(shape, request, where)


def _plan_volume(shape, affine, request: Request, where: str) -> UpscalePlan:
    if request.size is not None:
        raise UsageError(f"{where}: --size applies to 2D images; use --scale or --spacing")
    if isinstance(request.scale, tuple):
        raise UsageError(f"{where}: a volume takes one in-plane --scale, not a pair")
    check_affine(affine, where)
    try:
        vplan = plan_volume(shape, affine, request.scale, request.spacing, request.axes)
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from None
    check_voxels(where, shape, vplan.out_shape, request.max_voxels)
    check_spacing(affine)  # warns when the voxels are far from the training data's
    return UpscalePlan(shape, vplan.out_shape, vplan.factors, volume=vplan,
                       notes=tuple(vplan.notes()))  # fmt: skip


def _plan_image(shape: tuple[int, int], request: Request, where: str) -> UpscalePlan:
    if request.spacing is not None or request.axes is not None:
        raise UsageError(f"{where}: --spacing and --axes apply to volumes; use --scale or --size")
    if request.size is not None:
        try:
            factors = size_factors(shape, request.size)
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None
    else:
        factors = request.scale if isinstance(request.scale, tuple) else (request.scale,) * 2
    scale = Scale2d(*(AxisScale(f.numerator, f.denominator) for f in factors))
    out = scale.out_shape(*shape)
    if min(out) < 1 or min(shape) < 1:
        raise ValueError(f"{where}: an image of shape {shape} has no pixels")
    check_voxels(where, shape, out, request.max_voxels)
    return UpscalePlan(shape, out, tuple(factors), scale2d=scale, size=request.size)


def _keep_singleton(plan: UpscalePlan, shape: tuple[int, ...]) -> UpscalePlan:
    """Put the one-voxel axis of a geometry-free 3D input back in the plan's shapes."""
    factors = iter(plan.factors)
    outs = iter(plan.out_shape)
    full = [(Fraction(1), 1) if n == 1 else (next(factors), next(outs)) for n in shape]
    return UpscalePlan(shape, tuple(o for _, o in full), tuple(f for f, _ in full),
                       scale2d=plan.scale2d, size=plan.size, notes=plan.notes)  # fmt: skip


def check_model(model: nn.Module, request: Request) -> None:
    """Refuse an acquisition the model does not know; warn when it takes none."""
    from metasrgan.inference import model_acquisition

    if getattr(model, "acquisitions", ()):
        model_acquisition(model, request.acquisition)
    elif request.acquisition != "auto":
        warnings.warn(
            f"--acquisition {request.acquisition}: this model is not conditioned on the "
            "acquisition; the option has no effect",
            stacklevel=3,
        )


def run_plan(
    model: nn.Module,
    data: np.ndarray,
    affine: np.ndarray | None,
    plan: UpscalePlan,
    request: Request,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Carry out ``plan`` on ``data`` (in any units); returns float32 data in the same
    units, the output's affine (None when the input has none) and the updates of
    adaptation the model had first (0: the model as it is)."""
    from metasrgan.inference import upscale_image
    from metasrgan.volume import upscale_volume

    data = np.asarray(data, dtype=np.float32)
    if tuple(data.shape) != plan.in_shape:
        raise ValueError(f"the data have shape {data.shape}, the plan {plan.in_shape}")
    model, updates = adapted(model, data, plan, request, progress)
    if plan.is_volume:
        out, new_affine = upscale_volume(model, data, affine, plan.volume, request.batch,
                                         progress, request.acquisition,
                                         ensemble=request.ensemble)  # fmt: skip
        return out, new_affine, updates
    out = upscale_image(model, _image_2d(data), plan.scale2d, plan.size,
                        acquisition=request.acquisition, ensemble=request.ensemble)  # fmt: skip
    out = out.reshape(plan.out_shape)
    if affine is None:
        return out, None, updates
    factors = tuple(float(f) for f in plan.factors[:2]) + (1.0,)
    return out, scaled_affine(affine, factors), updates


def _image_2d(data: np.ndarray) -> np.ndarray:
    """A 2D plan's image: a 3D input's one-voxel axis dropped."""
    return data.reshape([n for n in data.shape if n != 1] if data.ndim == 3 else data.shape)


def adapted(
    model: nn.Module, data: np.ndarray, plan: UpscalePlan, request: Request, progress: bool
) -> tuple[nn.Module, int]:
    """``model`` fine-tuned on pairs made from ``data`` for the passes of ``plan`` as
    ``request.adapt`` says (:func:`metasrgan.adapt.adaptation`), in the intensities the
    passes use, and the updates it had (0 and ``model`` itself when none)."""
    from metasrgan.adapt import adapt_model, adaptation
    from metasrgan.geometry import stack_of_slices
    from metasrgan.intensity import IntensityMap
    from metasrgan.volume import volume_passes

    if not request.adapt:
        return model, 0
    if plan.is_volume:
        passes = [(pair, through) for _, pair, through in volume_passes(plan.volume)]
        slices = stack_of_slices(data, plan.volume.through)  # the two fine axes
    else:
        passes = [(plan.scale2d.fractions, False)]
        slices = _image_2d(data)[None]
    options, tasks = adaptation(request.adapt, passes, model, request.acquisition)
    if not tasks:
        return model, 0
    unit = IntensityMap.fit(data).apply(slices)
    net = adapt_model(model, unit, tasks, options, progress)
    return net, (0 if net is model else options.steps)


def upscale(
    x,
    scale=None,
    size=None,
    spacing=None,
    axes=None,
    model=None,
    acquisition: str = "auto",
    *,
    affine: np.ndarray | None = None,
    batch: int | None = None,
    max_voxels: int | None = None,
    progress: bool = False,
    adapt: int | str = "auto",
    ensemble: bool = False,
):
    """Super-resolve an image, a volume or a batch of tensors.

    Args:
        x: one of

            - a nibabel image (2D, or a 3D volume): returns a ``Nifti1Image`` with the refined
              affine (the field of view is kept), the header's sform/qform codes, float32;
            - a 2D numpy array ``[H, W]`` in any units: returns float32 ``[H', W']`` in the
              same units;
            - a numpy array with ``affine=`` (4x4 voxel -> mm): returns ``(data, affine)``;
              a 3D array without an affine is refused (``ValueError``);
            - a torch tensor ``[B, 1, H, W]`` in [0, 1]: returns ``[B, 1, H', W']`` in [0, 1].
        scale: a factor (``2``, ``2.5``, ``"7/3"``; in-plane for volumes) or, for 2D inputs,
            a ``(vertical, horizontal)`` pair.  ``H' = floor(H * s)``.
        size: output ``(H', W')`` of a 2D input.
        spacing: target voxel size in mm of a volume (one value or three).
        axes: the two in-plane voxel axes of a volume (default: from the spacing).
        model: a loaded model, a model file, or None/``"shipped"``.
        acquisition: ``auto``, ``kspace``, ``thick`` or ``bicubic`` (models that take one).
        batch: the most slices per forward pass for volumes (default: as many as fit in
            a quarter of the available memory, see :func:`metasrgan.volume.slice_batch`).
        max_voxels: refuse outputs larger than this (default
            :data:`~metasrgan.api.options.DEFAULT_MAX_VOXELS`).
        adapt: first fine-tune a copy of the model for this many updates on pairs made
            from the input itself (:mod:`metasrgan.adapt`; numpy and nibabel inputs); 0
            uses the model as it is; ``"auto"`` (the default) adapts clean in-plane
            k-space input only, for :data:`metasrgan.adapt.AUTO_STEPS` updates.
        ensemble: average the upscales of each slice's flipped and transposed copies
            (:mod:`metasrgan.ensemble`): a little more fidelity for 4-9 times the time.

    Exactly one of ``scale``, ``size`` and ``spacing`` is given.  Runs under
    ``torch.inference_mode()``; raises :class:`UsageError` for requests that do not fit the
    input, before any work.
    """
    request = Request.of(
        scale, size, spacing, axes, acquisition, batch, max_voxels, adapt, ensemble
    )
    if isinstance(x, torch.Tensor):
        return _upscale_tensor(_as_model(model), x, request)
    if _is_nibabel(x):
        return _upscale_nibabel(_as_model(model), x, request, progress)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"upscale takes a numpy array, a nibabel image or a tensor, not {type(x)}")
    plan = plan_upscale(x.shape, affine, request, "array")
    net = _as_model(model)
    check_model(net, request)
    out, new_affine, _ = run_plan(net, x, affine, plan, request, progress)
    return out if affine is None else (out, new_affine)


def _is_nibabel(x) -> bool:
    return hasattr(x, "affine") and hasattr(x, "header") and hasattr(x, "get_fdata")


def _upscale_nibabel(model: nn.Module, img, request: Request, progress: bool):
    import nibabel as nib

    from metasrgan.data.io import MRImage, _nifti_bytes

    data = np.asarray(img.get_fdata(dtype=np.float32))
    while data.ndim > 3 and data.shape[-1] == 1:  # (X, Y, Z, 1) is a 3D volume
        data = data[..., 0]
    plan = plan_upscale(data.shape, img.affine, request, "image")
    check_model(model, request)
    out, affine, _ = run_plan(model, data, img.affine, plan, request, progress)
    # the writer's header rules (sform/qform codes, zooms, float32), in memory
    payload = _nifti_bytes(MRImage(out, affine, header=img.header), out)
    return nib.Nifti1Image.from_bytes(payload)


def _upscale_tensor(model: nn.Module, x: torch.Tensor, request: Request) -> torch.Tensor:
    from metasrgan.inference import model_acquisition, upscale_tensor

    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"expected a tensor [B, 1, H, W] in [0, 1], got {tuple(x.shape)}")
    plan = plan_upscale(tuple(x.shape[-2:]), None, request, "tensor")
    check_voxels("tensor", tuple(x.shape), (x.shape[0], *plan.out_shape), request.max_voxels)
    check_model(model, request)
    device = next(iter(model.parameters())).device
    with torch.inference_mode():
        acq = model_acquisition(model, request.acquisition)
        y = upscale_tensor(model, x.to(device), plan.scale2d, plan.size, acquisition=acq,
                           ensemble=request.ensemble)  # fmt: skip
    return y.clone()  # a normal tensor: inference tensors refuse later in-place edits
