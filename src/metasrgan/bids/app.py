"""The BIDS App: super-resolve every selected scan of each participant into a derivatives
dataset, one participant per job (``--n-jobs`` of them at once on one machine).

A participant whose outputs all exist with the same settings and model is skipped (a rerun
or a resubmitted array job does nothing); ``overwrite`` redoes it.  4D series are skipped with
a note; a scan that fails is logged and the others still run.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metasrgan.api.options import ADAPT_AUTO, check_adapt
from metasrgan.bids.dataset import RawScan, find_scans
from metasrgan.bids.derivatives import (
    bids_uri,
    dataset_description,
    derivative_relpath,
    write_dataset_description,
)

log = logging.getLogger("metasrgan.bids")


@dataclass(frozen=True)
class AppSettings:
    """What to do to each scan: exactly one of ``scale`` (in-plane) and ``spacing`` (mm)."""

    scale: str | None = None
    spacing: float | None = None
    dtype: str = "float32"
    model: str | None = None
    """Model file; None: the shipped model."""
    device: str = "auto"
    batch: int = 1
    overwrite: bool = False
    adapt: int | str = ADAPT_AUTO
    """Adaptation to each scan (``--adapt``, :mod:`metasrgan.adapt`)."""

    def __post_init__(self) -> None:
        from metasrgan.headers import DTYPES

        if (self.scale is None) == (self.spacing is None):
            raise ValueError("give exactly one of --scale and --spacing")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype is one of {', '.join(DTYPES)}; got {self.dtype!r}")
        object.__setattr__(self, "adapt", check_adapt(self.adapt))  # frozen

    def record(self) -> dict[str, Any]:
        """What a rerun compares to decide that an output is already done."""
        return {"Scale": self.scale, "Spacing": self.spacing, "DataType": self.dtype,
                "Adapt": self.adapt}  # fmt: skip


@dataclass
class ParticipantResult:
    label: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Left out on purpose, with a note: 4D series, scans already at the target spacing."""
    done_before: list[str] = field(default_factory=list)
    """Outputs that a previous run made with the same settings and model."""
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def already_done(self) -> bool:
        return bool(self.done_before) and not self.written and not self.failed


def _is_done(out_root: Path, rel: str, settings: AppSettings, model: dict) -> bool:
    """The output and its sidecar exist and were made with these settings and this model."""
    import json

    from metasrgan.headers import sidecar_path

    image = out_root / rel
    side = sidecar_path(image)
    if not image.is_file() or side is None or not side.is_file():
        return False
    try:
        record = json.loads(side.read_text()).get("SuperResolution", {})
    except (OSError, ValueError):
        return False
    if record.get("Settings") == settings.record() and record.get("Model") == model:
        return True
    if not settings.overwrite:
        raise ValueError(
            f"{rel} exists, made with other settings or another model "
            f"({record.get('Settings')}); pass --overwrite to redo it"
        )
    return False


def _geometry(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Shape (trailing singleton axes past the third dropped) and voxel sizes along the first
    three axes, from the header alone."""
    import nibabel as nib

    from metasrgan.geometry import spacing_of

    img = nib.load(str(path))
    shape = tuple(int(n) for n in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape, spacing_of(img.affine)


def _skip_reason(shape: tuple[int, ...], zooms: tuple[float, ...], settings: AppSettings):
    """Why a scan is left out on purpose (a note, not a failure), or None."""
    if len(shape) > 3:
        return f"a 4D series {shape} (this tool upscales 2D and 3D images)"
    if settings.spacing is not None:
        coarse = [
            z > settings.spacing * (1 + 1e-3) for n, z in zip(shape, zooms, strict=False) if n > 1
        ]
        if not any(coarse):
            sizes = "x".join(f"{z:g}" for z in zooms)
            return f"its {sizes} mm voxels are already at --spacing {settings.spacing:g} or finer"
    return None


def _super_resolve(model, scan: RawScan, settings: AppSettings):
    """Upscale one scan as :func:`metasrgan.api.upscale` does; returns the output image
    (header derived from the scan's) and the ``SuperResolution`` record."""
    from metasrgan import __version__, api
    from metasrgan.api.core import check_model, run_plan
    from metasrgan.data.io import read_image
    from metasrgan.geometry import spacing_of
    from metasrgan.headers import derived_image, super_resolution_record

    image = read_image(scan.path)
    data = image.array if image.array.ndim == 3 else image.array[..., None]
    request = api.Request.of(scale=settings.scale, spacing=settings.spacing, batch=settings.batch,
                             adapt=settings.adapt)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = api.plan_upscale(data.shape, image.affine, request, scan.relpath)
        check_model(model, request)
        out, affine, updates = run_plan(model, data, image.affine, plan, request)
    for message in dict.fromkeys(str(w.message) for w in caught):
        log.warning("%s: %s", scan.relpath, message)
    for note in plan.notes:
        log.info("%s: %s", scan.relpath, note)
    done = f"metasrgan {__version__} x" + ",".join(str(f) for f in plan.factors)
    img = derived_image(out, affine, image.header, done, settings.dtype)
    record = super_resolution_record(
        getattr(model, "record", {}), plan.factors, data.shape, out.shape,
        spacing_of(image.affine), spacing_of(affine), settings.dtype, adapt=updates,
    )  # fmt: skip
    return img, record


_MODELS: dict[tuple[str | None, str], Any] = {}


def _model_for(settings: AppSettings, record: dict):
    """The model, loaded once per process."""
    key = (settings.model, settings.device)
    if key not in _MODELS:
        from metasrgan import inference

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", inference.UntrainedModelWarning)
            model = inference.load(settings.model, inference.pick_device(settings.device))
        model.record = record  # type: ignore[attr-defined]
        _MODELS[key] = model
    return _MODELS[key]


def run_participant(
    label: str, scans: list[RawScan], out_root: Path, settings: AppSettings, model_rec: dict
) -> ParticipantResult:
    """Every scan of one participant; never raises for one bad scan."""
    from metasrgan.headers import sidecar_content, sidecar_path, write_nifti, write_sidecar

    result = ParticipantResult(label)
    todo = []
    for scan in scans:
        try:
            reason = _skip_reason(*_geometry(scan.path), settings)
            if reason:
                log.info("sub-%s: skipped %s: %s", label, scan.relpath, reason)
                result.skipped.append(scan.relpath)
                continue
            rel = derivative_relpath(scan.relpath, settings.spacing)
            if not settings.overwrite and _is_done(out_root, rel, settings, model_rec):
                result.done_before.append(rel)
                continue
            todo.append((scan, rel))
        except (ValueError, OSError) as err:
            result.failed.append((scan.relpath, str(err)))
            log.error("sub-%s: FAILED %s: %s", label, scan.relpath, err)
    if result.done_before and not todo and not result.failed:
        log.info(
            "sub-%s: already done (%d outputs); --overwrite redoes it",
            label,
            len(result.done_before),
        )
    for scan, rel in todo:
        try:
            img, record = _super_resolve(_model_for(settings, model_rec), scan, settings)
            record["Settings"] = settings.record()
            dst = out_root / rel
            write_nifti(dst, img)
            content = sidecar_content(record, [bids_uri(scan.relpath)], scan.metadata)
            # required of anatomical derivatives; a raw scan is not skull-stripped unless
            # its sidecar says so
            content.setdefault("SkullStripped", False)
            if settings.spacing is not None:  # required with a res- entity
                reached = "x".join(f"{z:g}" for z in record["OutputVoxelSize"])
                content["Resolution"] = (
                    f"--spacing {settings.spacing:g} mm: voxels of "
                    f"{reached} mm (axes already finer kept)"
                )
            write_sidecar(sidecar_path(dst), content)
            result.written.append(rel)
            log.info("sub-%s: %s -> %s", label, scan.relpath, rel)
        except (ValueError, OSError) as err:
            result.failed.append((scan.relpath, str(err)))
            log.error("sub-%s: FAILED %s: %s", label, scan.relpath, err)
    return result


def _worker_init(level: int, threads: int) -> None:
    import torch

    from metasrgan import logs

    logs.setup_level(level)
    torch.set_num_threads(max(1, threads))


def run(
    bids_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: AppSettings,
    participants: Sequence[str] | None = None,
    sessions: Sequence[str] | None = None,
    suffixes: Sequence[str] | None = None,
    n_jobs: int = 1,
    threads: int = 0,
) -> list[ParticipantResult]:
    """Run the app at the participant level; returns one result per participant."""
    from metasrgan import api, inference
    from metasrgan.checkpoint import read_metadata
    from metasrgan.headers import model_record

    api.Request.of(scale=settings.scale, spacing=settings.spacing)  # a bad option: no work
    bids_dir, out_root = Path(bids_dir), Path(out_dir)
    if n_jobs < 1:
        raise ValueError(f"--n-jobs must be at least 1, got {n_jobs}")
    if out_root.resolve() == bids_dir.resolve():
        raise ValueError(
            "OUTPUT_DIR must not be BIDS_DIR (use e.g. BIDS_DIR/derivatives/metasrgan)"
        )
    model_path = settings.model or inference.shipped_model_path()
    model_rec = model_record(model_path, read_metadata(model_path) if model_path else None)
    if model_path is None:
        log.warning("no trained model available: outputs come from an UNTRAINED network")
    by_subject, description = find_scans(bids_dir, participants, sessions, suffixes)
    out_root.mkdir(parents=True, exist_ok=True)
    write_dataset_description(
        out_root, dataset_description(description, model_rec, bids_dir, out_root)
    )
    jobs = [(label, scans) for label, scans in by_subject.items()]
    if n_jobs == 1 or len(jobs) <= 1:
        return [run_participant(lab, scans, out_root, settings, model_rec) for lab, scans in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = min(n_jobs, len(jobs))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_job = threads or max(1, (cores or 1) // workers)  # the cores this job was given
    level = logging.getLogger("metasrgan").getEffectiveLevel()
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(level, per_job),
    ) as pool:
        futures = [
            pool.submit(run_participant, lab, scans, out_root, settings, model_rec)
            for lab, scans in jobs
        ]
        return [_result_of(future, label) for future, (label, _) in zip(futures, jobs, strict=True)]


def _result_of(future, label: str) -> ParticipantResult:
    """A worker that died (out of memory, killed) fails its participant, not the run."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool as err:
        log.error("sub-%s: FAILED: its worker process died (%s)", label, err)
        return ParticipantResult(label, failed=[(f"sub-{label}", f"worker died: {err}")])
