"""metasrgan: arbitrary-scale super-resolution of brain MRI with one small network.

The public API (imported on first use, so ``import metasrgan`` does not import torch)::

    import metasrgan
    model = metasrgan.load_model()                      # the shipped model
    sr = metasrgan.upscale(nib.load("t1.nii.gz"), scale=2, model=model)
    metasrgan.upscale_file("t1.nii.gz", "t1_x2.nii.gz", scale=2)

See :mod:`metasrgan.api`.
"""

__version__ = "0.1.0"

_API = ("load_model", "upscale", "upscale_file", "UsageError", "NonFiniteOutputError")

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from metasrgan import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'metasrgan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
