"""Exact scale arithmetic shared by the upscaler, the data pipeline and the geometry code.

A scale ``s`` is held as a fraction ``p/q`` in lowest terms so that every index is an
integer computation.  Float floors misplace pixels: ``floor(i / 2.3)`` is wrong for some
``i`` because ``2.3`` is not representable (the official Meta-SR code has this bug).

Output size rule: an axis of ``n`` input pixels becomes ``floor(n * p / q)`` pixels, which
is exactly ``n * s`` whenever ``n * s`` is an integer.  Output pixel ``i`` reads input
pixel ``floor(i * q / p)`` and gets the fractional offset ``(i * q mod p) / p``; pixels
``i = a + k * p`` share the offset of phase ``a`` and read input rows
``floor(a * q / p) + k * q``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction

TRAINED_SCALES: tuple[float, ...] = tuple(round(1.0 + 0.1 * k, 1) for k in range(1, 31))
"""The paper's scales 1.1, 1.2, ..., 4.0."""

MAX_DENOMINATOR = 1000


def as_fraction(scale: float | int | str | Fraction) -> Fraction:
    """Convert a user scale to an exact fraction (``2.3`` -> ``23/10``)."""
    if isinstance(scale, Fraction):
        frac = scale
    elif isinstance(scale, str):
        frac = Fraction(scale.strip())
    else:
        if not math.isfinite(float(scale)):
            raise ValueError(f"scale must be a finite number, got {scale!r}")
        frac = Fraction(str(float(scale))) if isinstance(scale, float) else Fraction(scale)
    frac = frac.limit_denominator(MAX_DENOMINATOR)
    if frac < 1:
        raise ValueError(f"scale must be >= 1 (this is an upscaler), got {float(frac):g}")
    return frac


@dataclass(frozen=True)
class AxisScale:
    """One axis of an upscaling: ``s = p / q`` in lowest terms."""

    p: int
    q: int

    @classmethod
    def of(cls, scale: float | int | str | Fraction) -> AxisScale:
        frac = as_fraction(scale)
        return cls(frac.numerator, frac.denominator)

    @property
    def value(self) -> float:
        return self.p / self.q

    def out_size(self, n: int) -> int:
        """Output length for ``n`` input pixels: ``floor(n * p / q)``."""
        return (n * self.p) // self.q

    def source_index(self, i: int) -> int:
        """Input pixel read by output pixel ``i``."""
        return (i * self.q) // self.p

    def offset(self, i: int) -> float:
        """Fractional position of output pixel ``i`` inside its input pixel."""
        return ((i * self.q) % self.p) / self.p

    def phase_offsets(self) -> list[float]:
        """Offset of each phase ``a = 0 .. p-1`` (output pixels ``a + k*p``)."""
        return [((a * self.q) % self.p) / self.p for a in range(self.p)]

    def phase_start(self, a: int) -> int:
        """Input pixel read by the first output pixel of phase ``a``."""
        return (a * self.q) // self.p

    def phase_count(self, a: int, n_out: int) -> int:
        """How many of ``n_out`` output pixels belong to phase ``a``."""
        return 0 if a >= n_out else (n_out - 1 - a) // self.p + 1


@dataclass(frozen=True)
class Scale2d:
    """Vertical and horizontal scale of one 2D upscaling."""

    h: AxisScale
    w: AxisScale

    @classmethod
    def of(
        cls,
        scale: float | int | str | Fraction | tuple | list | Scale2d,
    ) -> Scale2d:
        if isinstance(scale, Scale2d):
            return scale
        if isinstance(scale, (tuple, list)):
            if len(scale) != 2:
                raise ValueError(f"expected (vertical, horizontal) scales, got {scale!r}")
            return cls(AxisScale.of(scale[0]), AxisScale.of(scale[1]))
        axis = AxisScale.of(scale)
        return cls(axis, axis)

    @property
    def values(self) -> tuple[float, float]:
        return (self.h.value, self.w.value)

    @property
    def symmetric(self) -> bool:
        return self.h == self.w

    def out_shape(self, height: int, width: int) -> tuple[int, int]:
        return (self.h.out_size(height), self.w.out_size(width))

    def scale_feature(self) -> float:
        """The weight prediction network's third input, ``1/s``.

        For unequal axes this is ``1/sqrt(s_h * s_w)`` (the geometric mean scale), which
        equals the paper's ``1/r`` whenever both axes agree.
        """
        return 1.0 / math.sqrt(self.h.value * self.w.value)

    def warn_if_untrained(self, low: float = 1.0, high: float = 4.0) -> None:
        for v in self.values:
            if v > high + 1e-9 or v < low - 1e-9:
                warnings.warn(
                    f"scale {v:g} is outside the trained range 1.1-4.0; "
                    "the output is an extrapolation",
                    stacklevel=3,
                )
                return


def scale_from_sizes(n_in: int, n_out: int) -> Fraction:
    """The exact ratio ``n_out / n_in`` for an explicit output size."""
    if n_in <= 0 or n_out <= 0:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    return Fraction(n_out, n_in)
