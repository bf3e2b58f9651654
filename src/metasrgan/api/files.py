"""Files and folders: plan every input from its header, check every output path, then run.

Used by ``metasrgan upscale`` (and meant for the BIDS runner and the viewer's download):
nothing is read in full, loaded or written until the whole request has been checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from torch import nn

from metasrgan.api.core import UpscalePlan, _as_model, check_model, plan_upscale, run_plan
from metasrgan.api.options import Request, UsageError, check_output, sidecar_of


@dataclass(frozen=True)
class FileResult:
    """What :func:`upscale_file` wrote."""

    src: Path
    dst: Path
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    factors: tuple[Fraction, ...]
    notes: tuple[str, ...] = ()
    updates: int = 0
    """Updates of adaptation to the input the model had first (0: as it is)."""

    def summary(self) -> str:
        factors = ", ".join(str(f) for f in self.factors)
        adapted = f", adapted to it: {self.updates} updates" if self.updates else ""
        return (f"{self.src} -> {self.dst}  {self.in_shape} -> {self.out_shape} "
                f"(factors {factors}{adapted})")  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One input of a request: its output path and plan, or why it cannot run."""

    src: Path
    dst: Path
    plan: UpscalePlan | None = None
    error: str | None = None


def peek_geometry(path: Path) -> tuple[tuple[int, ...], np.ndarray | None] | None:
    """Shape and affine from the header alone (NIfTI, PNG/TIFF/JPEG, ``.npy``); None when
    that is not possible (DICOM, damaged files: the reader then says what is wrong)."""
    from metasrgan.data.io import NIFTI_SUFFIXES, PLAIN_SUFFIXES, suffix_of

    suffix = suffix_of(path)
    try:
        if path.is_dir():
            return None
        if suffix in NIFTI_SUFFIXES:
            import nibabel as nib

            img = nib.load(str(path))  # lazy: the header only
            shape = tuple(int(n) for n in img.shape)
            while len(shape) > 3 and shape[-1] == 1:
                shape = shape[:-1]
            return shape, np.asarray(img.affine, dtype=np.float64)
        if suffix in PLAIN_SUFFIXES:
            from PIL import Image

            with Image.open(path) as im:
                frames = getattr(im, "n_frames", 1)
                shape = (im.height, im.width) + ((frames,) if frames > 1 else ())
            return shape, None
        if suffix == ".npy":
            return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape), None
    except Exception:  # noqa: BLE001 - the full reader reports the problem precisely
        return None
    return None


def plan_file(src: Path, dst: Path, request: Request, overwrite: bool = False) -> UpscalePlan:
    """Check one input against ``request`` and its output path; reads only the header where
    the format allows (DICOM series are read in full)."""
    from metasrgan.data.io import read_image

    src, dst = Path(src), Path(dst)
    geometry = peek_geometry(src)
    if geometry is None:
        image = read_image(src)
        geometry = (image.shape, image.affine)
    plan = plan_upscale(*geometry, request, str(src))
    check_output(src, dst, plan.is_volume, overwrite)
    return plan


def upscale_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    scale=None,
    size=None,
    spacing=None,
    axes=None,
    model=None,
    acquisition: str = "auto",
    *,
    overwrite: bool = False,
    max_voxels: int | None = None,
    batch: int | None = None,
    progress: bool = False,
    dtype: str = "float32",
    adapt: int | str = "auto",
    ensemble: bool = False,
) -> FileResult:
    """Upscale the image or volume in ``src`` (NIfTI, DICOM, PNG/TIFF/JPEG, ``.npy``) into
    ``dst``, with the same options as :func:`~metasrgan.api.core.upscale`.

    The request and the output path are checked before anything is read in full: ``dst``
    must have an ending for the input's kind (volumes: ``.nii``/``.nii.gz``), must not be
    the input or its JSON sidecar, and may exist only with ``overwrite``.  NIfTI outputs
    get a BIDS-style sidecar next to ``dst`` and are stored as ``dtype`` (``float32``,
    ``int16`` or ``same``, scaled with ``scl_slope``).  Outputs keep the input's units
    (8/16-bit PNGs their bit depth) and are written atomically.
    """
    request = Request.of(
        scale, size, spacing, axes, acquisition, batch, max_voxels, adapt, ensemble
    )
    plan = plan_file(Path(src), Path(dst), request, overwrite)
    return run_job(_as_model(model), Job(Path(src), Path(dst), plan), request, progress, dtype)


def run_job(
    model: nn.Module, job: Job, request: Request, progress: bool = False, dtype: str = "float32"
) -> FileResult:
    """Read, upscale and write one planned input (NIfTI outputs stored as ``dtype``:
    float32, int16 or ``same``, see :mod:`metasrgan.headers`)."""
    from metasrgan import __version__
    from metasrgan.data.io import MRImage, read_image, suffix_of, write_image

    check_model(model, request)
    image = read_image(job.src)
    plan = job.plan
    if plan is None or tuple(image.shape) != plan.in_shape:  # the header said otherwise
        plan = plan_upscale(image.shape, image.affine, request, str(job.src))
        check_output(job.src, job.dst, plan.is_volume, overwrite=True)
    out, affine, updates = run_plan(model, image.array, image.affine, plan, request, progress)
    bits = 16 if image.source_dtype == "uint16" else 8
    integer_picture = suffix_of(job.dst) in (".png", ".jpg", ".jpeg")
    if image.source_dtype in ("uint8", "uint16") and integer_picture:
        info = np.iinfo(image.source_dtype)  # same units and bit depth as the input
        out = np.clip(np.rint(out), info.min, info.max)
    done = f"metasrgan {__version__} x" + ",".join(str(f) for f in plan.factors)
    write_image(job.dst, MRImage(out.astype(np.float32), affine, (), job.src, image.header), bits,
                done=done, dtype=dtype)  # fmt: skip
    write_sidecar(job.dst, job.src, plan, model, dtype, updates, request.ensemble)
    return FileResult(job.src, job.dst, plan.in_shape, plan.out_shape, plan.factors, plan.notes,
                      updates)  # fmt: skip


def write_sidecar(
    dst: Path,
    src: Path,
    plan: UpscalePlan,
    model: nn.Module,
    dtype: str = "float32",
    updates: int = 0,
    ensemble: bool = False,
) -> None:
    """BIDS-style provenance next to a NIfTI output (atomic, like the image): the source,
    the exact factors, the model file with its SHA-256 and the updates of adaptation to
    the input it had first."""
    from metasrgan import headers

    side = sidecar_of(dst)
    if side is None:
        return
    record = headers.super_resolution_record(
        headers.model_record_of(model), plan.factors, plan.in_shape, plan.out_shape,
        dtype=dtype, adapt=updates, ensemble=ensemble,
    )  # fmt: skip
    headers.write_sidecar(side, headers.sidecar_content(record, [str(src)]))


# --------------------------------------------------------------------------- folders


def is_folder_request(src: Path) -> bool:
    """A folder of inputs (not one DICOM series folder)."""
    from metasrgan.data.io import find_images

    return src.is_dir() and find_images(src) != [src]


def folder_pairs(src: Path, output: Path) -> list[tuple[Path, Path]]:
    """``(input, output)`` for every image under ``src``, mirrored under ``output``; inputs
    inside ``output`` are never read (a rerun into ``src/out`` does not nest)."""
    from metasrgan.data.io import find_images, suffix_of

    if output.exists() and not output.is_dir():
        raise UsageError(f"{output} exists and is not a folder (the input is a folder)")
    src_r, out_r = src.resolve(), output.resolve()
    if out_r == src_r:
        raise UsageError(f"-o {output} is the input folder: outputs would replace the inputs")
    pairs = []
    for item in find_images(src):
        item_r = item.resolve()
        if item_r == out_r or out_r in item_r.parents:
            continue
        rel = item.relative_to(src)
        if item.is_dir():
            rel = rel.with_name(item.name + ".nii.gz") if rel.parts else Path(src.name + ".nii.gz")
        elif suffix_of(rel) == ".dcm":
            rel = rel.with_suffix(".nii.gz")  # DICOM is not written
        pairs.append((item, output / rel))
    if not pairs:
        raise UsageError(f"no readable images in {src}")
    return pairs


def plan_inputs(src: Path, output: Path, request: Request, overwrite: bool = False) -> list[Job]:
    """Every job of a request, checked before any work.

    One input: :class:`UsageError` for a request or output path that does not fit it, a job
    with ``error`` set when the input itself is unusable.  A folder: :class:`UsageError` when
    outputs exist without ``overwrite`` (a rerun), otherwise one job per input, each with
    its plan or the reason it cannot run (the others still run).
    """
    src, output = Path(src), Path(output)
    if not src.exists():
        raise UsageError(f"input not found: {src}")
    if not is_folder_request(src):
        try:
            return [Job(src, output, plan_file(src, output, request, overwrite))]
        except UsageError:
            raise
        except (ValueError, OSError) as err:
            return [Job(src, output, error=str(err))]
    pairs = folder_pairs(src, output)
    if not overwrite:
        existing = [d for _, d in pairs if d.exists()]
        if existing:
            raise UsageError(
                f"{len(existing)} output(s) exist already (first: {existing[0]}); "
                "pass --overwrite to replace them"
            )
    jobs, seen = [], set()
    for item, dst in pairs:
        try:
            if dst in seen:
                raise UsageError(f"{dst} is the output of another input too")
            seen.add(dst)
            jobs.append(Job(item, dst, plan_file(item, dst, request, overwrite=True)))
        except (ValueError, OSError) as err:
            jobs.append(Job(item, dst, error=str(err)))
    return jobs
