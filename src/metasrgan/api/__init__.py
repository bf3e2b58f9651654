"""The public Python API of metasrgan (re-exported by ``import metasrgan``).

- :func:`load_model`: the shipped model or a model file, ready for inference;
- :func:`upscale`: a nibabel image, a 2D array, an array with its affine, or a tensor;
- :func:`upscale_file`: a file in, a file out, everything checked before any work;
- :class:`UsageError`: a request that does not fit (the CLI exits 2 on it).

Torch is imported only when one of the functions is first used, so that ``import
metasrgan`` and ``metasrgan --help`` stay fast.
"""

from __future__ import annotations

import importlib

from metasrgan.api.options import DEFAULT_MAX_VOXELS, Request, UsageError

_LAZY = {
    "load_model": "metasrgan.api.core",
    "upscale": "metasrgan.api.core",
    "plan_upscale": "metasrgan.api.core",
    "UpscalePlan": "metasrgan.api.core",
    "upscale_file": "metasrgan.api.files",
    "plan_inputs": "metasrgan.api.files",
    "run_job": "metasrgan.api.files",
    "FileResult": "metasrgan.api.files",
    "NonFiniteOutputError": "metasrgan.inference",
}

__all__ = ["DEFAULT_MAX_VOXELS", "Request", "UsageError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
