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
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

TRAINED_SCALES: tuple[float, ...] = tuple(round(1.0 + 0.1 * k, 1) for k in range(1, 31))
"""The paper's scales 1.1, 1.2, ..., 4.0."""

MAX_DENOMINATOR = 1000
""":func:`as_fraction` rounds float noise (``2.3000000001``) to a fraction with at most this
denominator; user input goes through the stricter :func:`parse_scale`."""

MAX_SCALE_DENOMINATOR = 10
"""Scales typed by a user are ``p/q`` with ``q`` at most this: the upscaler's cost grows with
``p`` (``--scale 4.01 = 401/100`` costs 15x the time of x2), and every trained scale
(1.1, 1.2, ..., 4.0) has ``q <= 10``.  The viewer snaps its zoom to the same bound."""

MAX_SCALE = 16
"""The largest factor on one axis (the model is trained up to 4: beyond is extrapolation)."""

MAX_SCALES_IN_LIST = 1000
"""A scale list (``START:STOP:STEP``) longer than this is a typo, not a sweep."""


def as_fraction(scale: float | int | str | Fraction) -> Fraction:
    """Convert a scale to an exact fraction (``2.3`` -> ``23/10``); must be >= 1.

    Lenient (used on values the code computed itself): float noise is rounded to a
    denominator of at most :data:`MAX_DENOMINATOR`.  For user input use :func:`parse_scale`.
    """
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


def _exact(value: float | int | str | Fraction, what: str) -> Fraction:
    """The exact rational a user wrote: ``"2.5"``, ``"7/3"``, ``2.3`` (its shortest repr)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, Fraction):
            return value
        if isinstance(value, str):
            text = value.strip()
            if not math.isfinite(float(Fraction(text) if "/" in text else float(text))):
                raise OverflowError
            return Fraction(text)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise OverflowError
            near = Fraction(value).limit_denominator(MAX_SCALE_DENOMINATOR)
            if abs(float(near) - value) <= 1e-12 * max(1.0, abs(value)):
                return near  # the float of an allowed p/q (7/3 -> 2.3333333333333335)
            return Fraction(repr(value))
        return Fraction(value)
    except ZeroDivisionError:
        raise ValueError(f"{what}: {value!r} divides by zero") from None
    except OverflowError:
        raise ValueError(f"{what}: {value!r} is not a finite number") from None
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {value!r} is not a number (e.g. 2, 2.5 or 7/3)") from None


def _suggest(frac: Fraction) -> str:
    near = frac.limit_denominator(MAX_SCALE_DENOMINATOR)
    tenth = Fraction(round(frac * 10), 10)
    options = {near, tenth} if tenth >= 1 else {near}
    return " or ".join(f"{float(f):g} = {f.numerator}/{f.denominator}" for f in sorted(options))


def parse_scale(
    value: float | int | str | Fraction, what: str = "scale", allow_one: bool = False
) -> Fraction:
    """A user's scale factor as an exact fraction, validated before any work is done.

    Accepts ``2``, ``2.5``, ``"7/3"`` or a :class:`~fractions.Fraction`.  Refused with a
    message naming ``what`` (the option): non-numbers, ``1/0``, NaN/Inf, ``1e400``, factors
    below 1 (or equal to 1 unless ``allow_one``: an upscaler with nothing to do), above
    :data:`MAX_SCALE`, and denominators above :data:`MAX_SCALE_DENOMINATOR` (the nearest
    allowed scale is suggested: ``4.01`` -> ``4``).
    """
    frac = _exact(value, what)
    if frac < 1 or (frac == 1 and not allow_one):
        bound = ">= 1" if allow_one else "> 1"
        raise ValueError(f"{what}: must be {bound} (this is an upscaler), got {value!r}")
    if frac > MAX_SCALE:
        raise ValueError(f"{what}: {value!r} is above the largest factor, {MAX_SCALE}")
    if frac.denominator > MAX_SCALE_DENOMINATOR:
        raise ValueError(
            f"{what}: {value!r} = {frac.numerator}/{frac.denominator} has a denominator above "
            f"{MAX_SCALE_DENOMINATOR} (the cost grows with the numerator); use {_suggest(frac)}"
        )
    return frac


def parse_scales(
    spec: str | float | int | Fraction | Sequence[float | int | str | Fraction],
    what: str = "scales",
    as_float: bool = False,
    sort: bool = False,
) -> tuple:
    """A list of scales: ``"1.1:4.0:0.1"`` (inclusive range), ``"2,3,4"``, a mix
    (``"1.5:2:0.5,3"``), a number, or a sequence of numbers; each checked by
    :func:`parse_scale`.

    Returns exact fractions (or floats with ``as_float``: ``float(Fraction(11, 10)) == 1.1``)
    without duplicates, in the given order (sorted with ``sort``).
    """
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",")]
        items: list = [p for p in parts if p]
    elif isinstance(spec, (int, float, Fraction)) and not isinstance(spec, bool):
        items = [spec]
    else:
        items = list(spec)
    scales: list[Fraction] = []
    for item in items:
        if isinstance(item, str) and ":" in item:
            values = _scale_range(item, what)
        else:
            values = [parse_scale(item, what)]
        scales.extend(v for v in values if v not in scales)
        if len(scales) > MAX_SCALES_IN_LIST:
            raise ValueError(f"{what}: more than {MAX_SCALES_IN_LIST} scales in {spec!r}")
    if not scales:
        raise ValueError(f"{what}: no scales in {spec!r}")
    if sort:
        scales.sort()
    return tuple(float(s) for s in scales) if as_float else tuple(scales)


def _scale_range(text: str, what: str) -> list[Fraction]:
    pieces = text.split(":")
    if len(pieces) != 3:
        raise ValueError(f"{what}: {text!r} is not START:STOP:STEP (e.g. 1.1:4.0:0.1)")
    start, stop, step = (_exact(p, what) for p in pieces)
    if step <= 0 or stop < start:
        raise ValueError(f"{what}: {text!r} needs STEP > 0 and STOP >= START")
    count = int((stop - start) / step) + 1
    if count > MAX_SCALES_IN_LIST:
        raise ValueError(f"{what}: {text!r} has {count} scales, above {MAX_SCALES_IN_LIST}")
    return [parse_scale(start + i * step, what) for i in range(count)]


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

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.p, self.q)

    def out_size(self, n: int) -> int:
        """Output length for ``n`` input pixels: ``floor(n * p / q)``."""
        return (n * self.p) // self.q

    def in_size(self, n_out: int) -> int:
        """The LR-size rule: ``floor(n_out * q / p)`` input pixels for ``n_out`` HR pixels.

        Exact (``out_size(in_size(n)) == n``) whenever ``n_out`` is a multiple of ``p``,
        which is how training patches and evaluation crops are cut; otherwise the largest
        input whose exact upscaled length ``n * s`` does not exceed ``n_out``.
        """
        return (n_out * self.q) // self.p

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
    def fractions(self) -> tuple[Fraction, Fraction]:
        return (self.h.fraction, self.w.fraction)

    @property
    def symmetric(self) -> bool:
        return self.h == self.w

    def out_shape(self, height: int, width: int) -> tuple[int, int]:
        return (self.h.out_size(height), self.w.out_size(width))

    def in_shape(self, height: int, width: int) -> tuple[int, int]:
        """The LR shape for an HR ``height x width`` (see :meth:`AxisScale.in_size`)."""
        return (self.h.in_size(height), self.w.in_size(width))

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
                    f"scale {v:g} is outside the trained range 1.1-{high:g}; "
                    "the output is an extrapolation",
                    stacklevel=3,
                )
                return


def scale_from_sizes(n_in: int, n_out: int) -> Fraction:
    """The exact ratio ``n_out / n_in`` for an explicit output size."""
    if n_in <= 0 or n_out <= 0:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    return Fraction(n_out, n_in)
