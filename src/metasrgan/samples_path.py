"""The bundled real MRI samples: the one list (see scripts/make_samples.py and
metasrgan.data.offline for how the ``*_val`` slabs are cut)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLES = (
    "mni152_val", "colin27_val", "inia19_macaque", "epi_nibabel", "mr_small_pydicom",
    "mni152_train",
)  # fmt: skip
"""Validation slabs held out of training (``*_val``), real scans of kinds never trained on
(a macaque T1 (INIA19), a BOLD EPI volume (nibabel's test data), a clinical MR slice
(pydicom's)), and the one small training slab (``mni152_train``, for quick runs and tests)."""

TRAINING_SAMPLES = ("mni152_train",)
"""The samples a training split may read (every other sample is held out of training)."""


def sample_path(name: str) -> Path:
    """Path of a bundled sample NIfTI by name (``colin27_val``, ...)."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; bundled: {', '.join(SAMPLES)}")
    return Path(str(resources.files("metasrgan") / "samples" / f"{name}.nii.gz"))


def bundled_samples() -> dict[str, Path]:
    """``name -> path`` of every sample of :data:`SAMPLES` present in this install."""
    return {name: sample_path(name) for name in SAMPLES if sample_path(name).is_file()}
