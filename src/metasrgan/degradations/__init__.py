"""How low-resolution MRI is made: registered, parameterised degradations.

- :mod:`.resize`: software resize kernels (bicubic, bilinear, area);
- :mod:`.fourier`: k-space truncation and zero-filled (sinc) interpolation;
- :mod:`.profile`: thick slices (Gaussian or box slice profile, slice gap);
- :mod:`.noise`: Rician and Gaussian noise;
- :mod:`.steps`: the ``{name, args}`` registry of steps with random parameters;
- :mod:`.plan`: acquisitions, named presets, chains and weighted mixtures.
"""

from metasrgan.degradations.fourier import fourier_resize
from metasrgan.degradations.plan import (
    ACQUISITIONS,
    PRESETS,
    Chain,
    DegradationPlan,
    make_chain,
    make_plan,
)
from metasrgan.degradations.resize import resize
from metasrgan.degradations.steps import available_steps, make_step, register

__all__ = [
    "ACQUISITIONS",
    "PRESETS",
    "Chain",
    "DegradationPlan",
    "available_steps",
    "fourier_resize",
    "make_chain",
    "make_plan",
    "make_step",
    "register",
    "resize",
]
