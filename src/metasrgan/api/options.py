"""Everything a request to upscale can get wrong, checked before any work (torch-free).

Each check raises :class:`UsageError` with a message naming the option or the file, so the
CLI can exit 2 with nothing written; the library raises the same errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from metasrgan.scale import MAX_SCALE, parse_scale

ACQUISITIONS = ("auto", "kspace", "thick", "bicubic")
"""What ``--acquisition`` may name: how the low-resolution input was made.  ``auto`` picks
the model's default in-plane and ``thick`` along the thick (through-plane) axis."""

DEFAULT_MAX_VOXELS = 1 << 28
"""268,435,456 output voxels (1 GiB as float32; a 240x240x155 scan at x4 in-plane is 143M)."""

BYTES_PER_OUTPUT_VOXEL = 12
"""Peak memory per output voxel: the float32 output, the file's bytes and its compressed copy."""

MAX_BATCH = 4096
MAX_ADAPT_STEPS = 100_000
ADAPT_AUTO = "auto"
"""``--adapt auto`` (the default): adapt where it was measured to pay (clean in-plane
k-space; :data:`metasrgan.adapt.AUTO_STEPS`), use the model as it is elsewhere."""
VOLUME_SUFFIXES = (".nii.gz", ".nii")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npy", ".nii.gz", ".nii")


class UsageError(ValueError):
    """A request that cannot be carried out as asked (an option, an output path, a size
    limit): nothing has been done yet.  The CLI exits 2 on it."""


@dataclass(frozen=True)
class Request:
    """A validated upscaling request: exactly one of ``scale``, ``size``, ``spacing``.

    Attributes:
        scale: one factor (in-plane for volumes), or ``(vertical, horizontal)`` for 2D.
        size: output ``(height, width)`` of a 2D image, in pixels.
        spacing: target voxel size in mm of a volume: one value or one per axis.
        axes: the two in-plane voxel axes of a volume (default: from the header).
        acquisition: one of :data:`ACQUISITIONS`.
        batch: the most slices per forward pass (volumes); None: as many as memory allows.
        max_voxels: refuse outputs with more voxels than this.
        adapt: updates of self-supervised adaptation to the input before upscaling
            (:mod:`metasrgan.adapt`); 0: the model as it is; ``"auto"``: see
            :data:`ADAPT_AUTO`.
        ensemble: average the upscales of each slice's flipped and transposed copies
            (:mod:`metasrgan.ensemble`; 4-9 times the time).
    """

    scale: Fraction | tuple[Fraction, Fraction] | None = None
    size: tuple[int, int] | None = None
    spacing: float | tuple[float, float, float] | None = None
    axes: tuple[int, int] | None = None
    acquisition: str = "auto"
    batch: int | None = None
    max_voxels: int = DEFAULT_MAX_VOXELS
    adapt: int | str = ADAPT_AUTO
    ensemble: bool = False

    @classmethod
    def of(
        cls,
        scale=None,
        size=None,
        spacing=None,
        axes=None,
        acquisition: str | None = "auto",
        batch: int | None = None,
        max_voxels: int | None = None,
        adapt: int | str = ADAPT_AUTO,
        ensemble: bool = False,
    ) -> Request:
        """Parse and check user values (strings as typed on the command line, or numbers)."""
        given = [name for name, v in (("scale", scale), ("size", size), ("spacing", spacing))
                 if v is not None]  # fmt: skip
        if len(given) != 1:
            raise UsageError(
                "give exactly one of --scale, --size and --spacing"
                + (f" (got {', '.join('--' + g for g in given)})" if given else "")
            )
        return cls(
            scale=_check(parse_scale_option, scale) if scale is not None else None,
            size=_check(parse_size, size) if size is not None else None,
            spacing=_check(parse_spacing, spacing) if spacing is not None else None,
            axes=_check(parse_axes, axes) if axes is not None else None,
            acquisition=check_acquisition(acquisition),
            batch=None if batch is None else check_int("--batch", batch, low=1, high=MAX_BATCH),
            max_voxels=check_int(
                "--max-voxels", DEFAULT_MAX_VOXELS if max_voxels is None else max_voxels, low=1
            ),
            adapt=check_adapt(adapt),
            ensemble=check_bool("--ensemble", ensemble),
        )


def _check(parse, value):
    try:
        return parse(value)
    except UsageError:
        raise
    except ValueError as err:
        raise UsageError(str(err)) from None


def parse_scale_option(value) -> Fraction | tuple[Fraction, Fraction]:
    """``2.5``, ``"7/3"``, or a ``(vertical, horizontal)`` pair (2D only; 1 allowed on one
    axis of a pair).  See :func:`metasrgan.scale.parse_scale` for what is refused."""
    if isinstance(value, str) and "," in value:
        value = value.split(",")
    if hasattr(value, "h") and hasattr(value, "w"):  # a metasrgan.scale.Scale2d
        value = value.fractions
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise UsageError(f"--scale takes one factor or two (vertical, horizontal): {value!r}")
        pair = tuple(parse_scale(v, "--scale", allow_one=True) for v in value)
        if pair == (1, 1):
            raise UsageError("--scale: (1, 1) leaves the image as it is")
        return pair[0] if pair[0] == pair[1] else pair
    return parse_scale(value, "--scale")


def parse_size(value: str | Sequence[int]) -> tuple[int, int]:
    """``"480x480"`` or ``(480, 480)``: positive pixel counts (checked against the input by
    :func:`size_factors`)."""
    try:
        if isinstance(value, str):
            parts = value.lower().replace(" ", "").split("x")
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise ValueError
            h, w = int(parts[0]), int(parts[1])
        else:
            h, w = (int(v) for v in value)
            if (h, w) != tuple(value):
                raise ValueError
    except (TypeError, ValueError):
        raise UsageError(f"--size is HxW in pixels, e.g. 480x480; got {value!r}") from None
    if h < 1 or w < 1:
        raise UsageError(f"--size must be positive, got {value!r}")
    return h, w


def size_factors(in_shape: tuple[int, int], size: tuple[int, int]) -> tuple[Fraction, Fraction]:
    """Exact per-axis factors ``size / in_shape``; each at least 1 (this tool upsamples), at
    most :data:`~metasrgan.scale.MAX_SCALE`, and not both 1."""
    factors = tuple(Fraction(n_out, n_in) for n_in, n_out in zip(in_shape, size, strict=True))
    shown = f"{size[0]}x{size[1]}"
    if any(f < 1 for f in factors):
        raise UsageError(
            f"--size {shown} is smaller than the input's {in_shape[0]}x{in_shape[1]} "
            "(this tool upsamples)"
        )
    if all(f == 1 for f in factors):
        raise UsageError(f"--size {shown} is the input's size: nothing to do")
    if any(f > MAX_SCALE for f in factors):
        raise UsageError(
            f"--size {shown} is more than x{MAX_SCALE} the input's {in_shape[0]}x{in_shape[1]}"
        )
    return factors  # type: ignore[return-value]


def parse_spacing(value) -> float | tuple[float, float, float]:
    """``1``, ``"1"``, ``"1,1,3"`` or a 3-sequence: positive, finite mm."""
    items = value.split(",") if isinstance(value, str) else value
    items = [items] if not isinstance(items, (list, tuple)) else items
    try:
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        raise UsageError(f"--spacing is mm, one value or three (x,y,z); got {value!r}") from None
    if len(values) not in (1, 3):
        raise UsageError(f"--spacing is one value or three (x,y,z), got {value!r}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise UsageError(f"--spacing must be positive and finite, got {value!r}")
    return values[0] if len(values) == 1 else tuple(values)  # type: ignore[return-value]


def parse_axes(value) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise UsageError(f"--axes takes two voxel axes, e.g. 0 1; got {value!r}") from None
    if a == b or not (0 <= a < 3 and 0 <= b < 3):
        raise UsageError(f"--axes takes two different axes out of 0, 1, 2; got {value!r}")
    return (min(a, b), max(a, b))


def check_acquisition(value: str | None) -> str:
    value = "auto" if value is None else str(value)
    if value not in ACQUISITIONS:
        raise UsageError(f"--acquisition must be one of {', '.join(ACQUISITIONS)}; got {value!r}")
    return value


def check_bool(option: str, value) -> bool:
    """A switch: ``True`` or ``False`` only (not a truthy string or number)."""
    if not isinstance(value, bool):
        raise UsageError(f"{option} is on or off (True or False), got {value!r}")
    return value


def check_int(option: str, value, low: int, high: int | None = None) -> int:
    """An integer option within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{option} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise UsageError(f"{option} must be {bound}, got {value}")
    return value


def check_adapt(value) -> int | str:
    """``--adapt``: ``"auto"`` or a number of updates (``"200"`` as typed is 200)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == ADAPT_AUTO:
            return ADAPT_AUTO
        if not text.isdigit():
            raise UsageError(f"--adapt takes 'auto' or a number of updates, got {value!r}")
        value = int(text)
    return check_int("--adapt", value, low=0, high=MAX_ADAPT_STEPS)


def check_threads(value: int) -> int:
    """``--threads``: 0 keeps torch's default, otherwise at least 1."""
    return check_int("--threads", value, low=0, high=4096)


def check_device(name: str) -> str:
    """Syntax of ``--device`` (whether this machine has it is checked when the model loads)."""
    import re

    text = str(name).strip().lower()
    if not re.match(r"^(auto|cpu|cuda(:\d+)?|mps)$", text):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N; got {name!r}")
    return text


def check_voxels(where: str, in_shape: Sequence[int], out_shape: Sequence[int], limit: int):
    """Refuse an output with more voxels than ``limit``, saying how much it would take."""
    voxels = math.prod(int(n) for n in out_shape)
    if voxels > limit:
        gib = voxels * BYTES_PER_OUTPUT_VOXEL / 2**30
        raise UsageError(
            f"{where}: {'x'.join(map(str, in_shape))} -> {'x'.join(map(str, out_shape))} is "
            f"{voxels:,} output voxels (about {gib:.1f} GiB of memory), above --max-voxels "
            f"{limit:,}; use a smaller factor or raise --max-voxels"
        )
    return voxels


# --------------------------------------------------------------------------- output paths


def sidecar_of(path: Path) -> Path | None:
    """The BIDS JSON sidecar beside a NIfTI file (``x.nii.gz`` -> ``x.json``), else None."""
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return None


def check_output(src: Path, dst: Path, volume: bool, overwrite: bool) -> None:
    """``dst`` can receive the output of ``src``: a supported ending for the input's kind,
    not a folder, never the input or a file the input needs (its sidecar, the files of a
    DICOM series folder), and only an existing file with ``overwrite``."""
    from metasrgan.data.io import suffix_of

    if dst.is_dir():
        raise UsageError(f"{dst} is a folder; give a file name (the input is one file)")
    suffix = suffix_of(dst)
    allowed = VOLUME_SUFFIXES if volume else IMAGE_SUFFIXES
    if suffix not in allowed:
        kind = "a volume" if volume else "a 2D image"
        raise UsageError(
            f"{dst}: {kind} is written as {', '.join(allowed)}, not {suffix or '(no ending)'}"
            + ("; DICOM is not written" if suffix == ".dcm" else "")
        )
    if dst.parent.exists() and not dst.parent.is_dir():
        raise UsageError(f"{dst}: {dst.parent} is not a folder")
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r:
        raise UsageError(f"{dst} is the input itself; choose another output name")
    if src.is_dir() and src_r in dst_r.parents:
        raise UsageError(f"{dst} is inside the input DICOM folder {src}")
    needed = [p.resolve() for p in (sidecar_of(src),) if p is not None]
    ours = sidecar_of(dst)  # every NIfTI output gets a JSON sidecar
    for path in [dst] + ([ours] if ours else []):
        if path.resolve() in needed or path.resolve() == src_r:
            raise UsageError(
                f"{dst}: writing {path.name} would replace the input's own {path.name}; "
                "choose another output name"
            )
    if not overwrite:
        for path in [dst] + ([ours] if ours else []):
            if path.exists():
                raise UsageError(f"{path} exists; pass --overwrite to replace it")
