"""Scale sweeps: PSNR/SSIM of every method at every scale, and the tables that summarise them.

The protocol, for each HR slice (intensities mapped to [0, 1]) and each scale ``s = p/q``:

1. **Exact sizes.**  HR is cropped (never resized), centred, to the largest size not above
   its own whose sides are multiples of ``p``; the LR size is then ``HR * q / p`` exactly, so
   LR upscaled by ``s`` is HR pixel for pixel.
2. **Degradation.**  LR = ``degrade(HR, lr_shape, kind)``: antialiased bicubic (the paper's)
   or k-space truncation; clamped to [0, 1] like a stored image.
3. **Upscaling.**  Each model gets LR, the scale and the HR shape; bicubic is
   :func:`metasrgan.models.bicubic_resize`.  All outputs are clamped to [0, 1].
4. **Metrics** (``data_range = 1.0``) in three regions:
   ``crop``: the maximal-information window (largest intensity sum, the paper's crop) of
   ``crop_size`` (the whole slice where smaller), located once on the original slice and
   shared by every scale and method; ``slice``: the whole exact-size HR; ``brain``: the
   pixels where HR > ``mask_threshold`` (0 by default).

Tables give the mean and population standard deviation (ddof 0) over images.  Fixed-scale
models (SRGAN x2, EDSR x2; they have ``fixed_scale``) run only at their own scale.
Results do not depend on the batch size: every step works image by image inside a batch.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from metasrgan.metrics import SSIM_RADIUS, luminance, psnr, ssim, ssim_map
from metasrgan.scale import AxisScale, as_fraction

DATA_RANGE = 1.0
REGIONS = ("crop", "slice", "brain")
REGION_TITLES = {
    "crop": "maximal-information crop",
    "slice": "whole slice",
    "brain": "brain (HR > 0)",
}
MIN_FOREGROUND = 0.01
"""Slices of a volume with fewer non-zero pixels than this fraction are skipped."""
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".npy", ".dcm", *PICTURE_SUFFIXES)


# ----------------------------------------------------------------------------- scales


def parse_scales(text: str) -> list[Fraction]:
    """``"1.1:4.0:0.1"`` (inclusive), ``"2,3,4"``, or a mix: ``"1.5:2:0.5,3"``; exact fractions."""
    scales: list[Fraction] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        pieces = part.split(":")
        try:
            if len(pieces) == 1:
                values = [as_fraction(pieces[0])]
            elif len(pieces) == 3:
                start, stop, step = (Fraction(p.strip()) for p in pieces)
                if step <= 0 or stop < start:
                    raise ValueError
                count = int((stop - start) / step) + 1
                values = [as_fraction(start + i * step) for i in range(count)]
            else:
                raise ValueError
        except (ValueError, ZeroDivisionError):
            raise ValueError(
                f"bad scale list {text!r}: use START:STOP:STEP (e.g. 1.1:4.0:0.1) or 2,3,4"
            ) from None
        scales.extend(v for v in values if v not in scales)
    if not scales:
        raise ValueError(f"no scales in {text!r}")
    return sorted(scales)


def scale_label(scale: Fraction) -> str:
    """``2``, ``2.5``, ``1.1``, or ``7/3`` for scales without a short decimal."""
    value = float(scale)
    for digits in range(4):
        if Fraction(f"{value:.{digits}f}") == scale:
            return f"{value:.{digits}f}"
    return f"{scale.numerator}/{scale.denominator}"


# ----------------------------------------------------------------------------- protocol


def exact_hr_window(shape: tuple[int, int], scale: Fraction) -> tuple[int, int, int, int]:
    """Centred ``(top, left, height, width)`` whose sides are multiples of ``p`` (s = p/q)."""
    p = AxisScale.of(scale).p
    h, w = shape[0] - shape[0] % p, shape[1] - shape[1] % p
    if h == 0 or w == 0:
        raise ValueError(
            f"a {shape[0]}x{shape[1]} image is too small for scale {float(scale):g} = {scale}: "
            f"an exact LR size needs sides of at least {p} pixels"
        )
    return (shape[0] - h) // 2, (shape[1] - w) // 2, h, w


def exact_lr_shape(hr_shape: tuple[int, int], scale: Fraction) -> tuple[int, int]:
    axis = AxisScale.of(scale)
    return hr_shape[0] * axis.q // axis.p, hr_shape[1] * axis.q // axis.p


def information_window(image: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The maximal-information crop of ``size`` (clipped to the image) on ``image``."""
    from metasrgan.data.crop import max_information_crop

    size = (min(size[0], image.shape[0]), min(size[1], image.shape[1]))
    if size == tuple(image.shape):
        return 0, 0, size[0], size[1]
    return tuple(int(v) for v in max_information_crop(image, size))  # type: ignore[return-value]


def shift_window(
    window: tuple[int, int, int, int], origin: tuple[int, int], shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A window of the original slice in the coordinates of a sub-image at ``origin``.

    Moved inside (and shrunk to) the sub-image where it would cross its border.
    """
    top, left, h, w = window
    h, w = min(h, shape[0]), min(w, shape[1])
    top = min(max(top - origin[0], 0), shape[0] - h)
    left = min(max(left - origin[1], 0), shape[1] - w)
    return top, left, h, w


# ----------------------------------------------------------------------------- inputs


@dataclass
class EvalImage:
    """One HR slice in [0, 1] and where it came from (``source:z012``)."""

    name: str
    array: np.ndarray
    window: tuple[int, int, int, int] | None = None  # metric crop, set by evaluate()


@dataclass
class Method:
    """Bicubic (``model is None``) or a network."""

    label: str
    model: torch.nn.Module | None = None
    params: int | None = None
    fixed_scale: Fraction | None = None
    source: str = "bicubic"
    notes: list[str] = field(default_factory=list)

    def runs_at(self, scale: Fraction) -> bool:
        return self.fixed_scale is None or self.fixed_scale == scale


def bicubic_method() -> Method:
    return Method("Bicubic")


def load_method(source: str, device: torch.device | str = "cpu", label: str | None = None):
    """A model file (.safetensors) or ``shipped`` (the model shipped in the package)."""
    from metasrgan import inference
    from metasrgan.registry import count_parameters

    if source == "shipped":
        model = inference.load(None, device)
        name = label or "Meta-SRGAN (shipped)"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        model = inference.load(path, device)
        name = label or _model_label(model, path)
    model.eval()
    notes = []
    if getattr(model, "metadata", {}).get("untrained"):
        notes.append("UNTRAINED (no shipped model in this install): outputs are meaningless")
        if label is None:
            name += " [untrained]"
    fixed = getattr(model, "fixed_scale", None)
    return Method(
        label=name,
        model=model,
        params=count_parameters(model),
        fixed_scale=None if fixed is None else as_fraction(fixed),
        source=source,
        notes=notes,
    )


def _model_label(model: torch.nn.Module, path: Path) -> str:
    """The file's stem; a run's ``checkpoints/best`` becomes ``<run>/best``."""
    stem = path.name.removesuffix(".safetensors")
    if path.parent.name == "checkpoints" and path.parent.parent.name:
        return f"{path.parent.parent.name}/{stem}"
    return stem


def unique_labels(methods: Sequence[Method]) -> None:
    """Make labels distinct (``name``, ``name (2)``...) so tables and plots stay readable."""
    seen: dict[str, int] = {}
    for m in methods:
        n = seen.get(m.label, 0)
        seen[m.label] = n + 1
        if n:
            m.label = f"{m.label} ({n + 1})"


def _read_array(path: Path) -> np.ndarray:
    """The image or volume with its axial axis last (found from the affine, as training does)."""
    from metasrgan.data.datasets import axial_axis
    from metasrgan.data.io import read_image

    image = read_image(path)
    data = np.asarray(image.array, dtype=np.float32)
    if data.ndim == 3 and image.affine is not None:
        data = np.moveaxis(data, axial_axis(image), -1)
    return data


def slices_of(name: str, data: np.ndarray, picture: bool = False) -> Iterator[EvalImage]:
    """HR slices in [0, 1]: a 2D image or the axial (last-axis) slices of a volume.

    ``picture``: the data came from a PNG/JPEG/TIFF, so ``H x W x 3`` is RGB (compared on
    its BT.601 luminance) rather than a volume of three slices.
    """
    from metasrgan.intensity import IntensityMap

    data = np.asarray(data, dtype=np.float32)
    if picture and data.ndim == 3 and data.shape[-1] in (3, 4):
        data = luminance(data[..., :3]).astype(np.float32)  # RGB(A): compare on BT.601 Y
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a 2D image or a 3D volume, got shape {data.shape}")
    unit = IntensityMap.fit(data).apply(data)
    if unit.ndim == 2:
        yield EvalImage(name, unit)
        return
    for z in range(unit.shape[-1]):
        sl = np.ascontiguousarray(unit[..., z])
        if np.count_nonzero(sl) >= MIN_FOREGROUND * sl.size:
            yield EvalImage(f"{name}:z{z:03d}", sl)


def _bundled_samples() -> dict[str, Path]:
    from importlib import resources

    folder = Path(str(resources.files("metasrgan") / "samples"))
    return {p.name.removesuffix(".nii.gz"): p for p in sorted(folder.glob("*.nii.gz"))}


def _brats_volumes(root: Path) -> list[Path]:
    from metasrgan.data.datasets import brats_subjects

    return list(brats_subjects(root, "t1ce").values())


def load_images(data: str, max_images: int | None = None) -> list[EvalImage]:
    """HR slices for ``--data``.

    ``data`` is ``samples`` (the validation slabs held out of training), a bundled sample
    name (``mni152_val``, ``colin27_val``, ``inia19_macaque``; comma-separated for several),
    an image or volume file, a folder of them, or a BraTS root (``*_t1ce.nii[.gz]`` or
    ``*-t1c.nii[.gz]`` anywhere below).  ``max_images`` keeps that many slices, evenly spaced.
    """
    bundled = _bundled_samples()
    paths: list[tuple[str, Path]] = []
    names = [n.strip() for n in data.split(",")] if "," in data else [data]
    if all(n == "samples" or n in bundled for n in names):
        from metasrgan.data.offline import HELD_OUT_SLABS

        for n in names:
            chosen = [s for s in HELD_OUT_SLABS if s in bundled] if n == "samples" else [n]
            paths += [(s, bundled[s]) for s in chosen]
    else:
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(
                f"--data {data!r} is neither a file, a folder, 'samples' nor a bundled sample "
                f"({', '.join(bundled)})"
            )
        if path.is_file():
            paths = [(_stem(path), path)]
        else:
            volumes = _brats_volumes(path)
            if not volumes:
                volumes = [
                    p
                    for p in sorted(path.iterdir())
                    if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)
                ]
            if not volumes:
                raise FileNotFoundError(f"{path}: no images, volumes or BraTS t1ce files in it")
            if all(p.name.lower().endswith(".dcm") for p in volumes):
                paths = [(path.name, path)]  # a DICOM series: one volume
            else:
                paths = [(_stem(p), p) for p in volumes]
    images: list[EvalImage] = []
    for name, p in paths:
        try:
            picture = p.name.lower().endswith(PICTURE_SUFFIXES)
            images.extend(slices_of(name, _read_array(p), picture))
        except ValueError as err:
            raise ValueError(f"{p}: {err}") from None
    if not images:
        raise ValueError(f"--data {data!r}: no slice has enough non-zero pixels to evaluate")
    if max_images and len(images) > max_images:
        keep = np.unique(np.linspace(0, len(images) - 1, max_images).round().astype(int))
        images = [images[i] for i in keep]
    return images


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".npy", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# ----------------------------------------------------------------------------- running


@torch.no_grad()
def upscale(method: Method, lr: torch.Tensor, scale: Fraction, shape: tuple[int, int]):
    """``[B, 1, h, w]`` LR in [0, 1] -> ``[B, 1, *shape]`` clamped to [0, 1]."""
    from metasrgan.inference import upscale_tensor
    from metasrgan.models import bicubic_resize

    if method.model is None:
        return bicubic_resize(lr, shape).clamp_(0.0, 1.0)
    device = next(iter(method.model.parameters())).device
    out = upscale_tensor(method.model, lr.to(device), scale, shape)
    if tuple(out.shape[-2:]) != tuple(shape):
        raise ValueError(
            f"{method.label} returned {tuple(out.shape[-2:])} for an expected {tuple(shape)}"
        )
    return out.float().cpu()


def prepare(hr: torch.Tensor, scale: Fraction, degradation: str):
    """Crop ``[B, 1, H, W]`` HR to an exact size and degrade it: ``(hr_exact, lr, origin)``."""
    from metasrgan.data.degrade import degrade

    top, left, h, w = exact_hr_window(tuple(hr.shape[-2:]), scale)
    hr = hr[..., top : top + h, left : left + w]
    lr = degrade(hr, exact_lr_shape((h, w), scale), degradation).clamp_(0.0, 1.0)
    return hr, lr, (top, left)


def region_metrics(
    sr: np.ndarray,
    hr: np.ndarray,
    window: tuple[int, int, int, int],
    mask_threshold: float = 0.0,
) -> dict[str, tuple[float, float]]:
    """``{region: (psnr, ssim)}`` for one image (``window`` in ``hr``'s coordinates).

    The whole-slice SSIM map is computed once and averaged twice (slice, brain); this is
    exactly :func:`metasrgan.metrics.ssim` with and without the mask.
    """
    t, left, h, w = window
    crop = (slice(t, t + h), slice(left, left + w))
    r = SSIM_RADIUS
    interior = ssim_map(sr, hr, DATA_RANGE)[r:-r, r:-r]
    out = {
        "crop": (psnr(sr[crop], hr[crop], DATA_RANGE), ssim(sr[crop], hr[crop], DATA_RANGE)),
        "slice": (psnr(sr, hr, DATA_RANGE), float(interior.mean(dtype=np.float64))),
    }
    mask = hr > mask_threshold
    inside = mask[r:-r, r:-r]
    if inside.any():
        out["brain"] = (
            psnr(sr, hr, DATA_RANGE, mask),
            float(interior[inside].mean(dtype=np.float64)),
        )
    else:  # no brain in the slice (or only at its border)
        out["brain"] = (math.nan, math.nan)
    return out


def evaluate(
    images: Sequence[EvalImage],
    methods: Sequence[Method],
    scales: Sequence[Fraction],
    degradation: str = "bicubic",
    crop_size: tuple[int, int] = (128, 128),
    batch_size: int = 8,
    mask_threshold: float = 0.0,
    progress: bool = True,
) -> list[dict]:
    """Per-image rows ``{image, method, scale, region, psnr, ssim}`` for every combination.

    Images of the same shape are batched (``batch_size`` at a time); the bar counts images.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    for im in images:
        im.window = information_window(im.array, crop_size)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(im.array.shape), []).append(i)
    rows: dict[tuple[int, str, Fraction], dict[str, tuple[float, float]]] = {}
    bar = tqdm(total=len(images), unit="image", desc="evaluate", disable=not progress)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            hr_full = torch.from_numpy(np.stack([images[i].array for i in chunk]))[:, None]
            for scale in scales:
                hr, lr, origin = prepare(hr_full, scale, degradation)
                hr_np = hr[:, 0].numpy().astype(np.float64)
                shape = tuple(hr.shape[-2:])
                for method in methods:
                    if not method.runs_at(scale):
                        continue
                    sr = upscale(method, lr, scale, shape)[:, 0].numpy().astype(np.float64)
                    for k, i in enumerate(chunk):
                        window = shift_window(images[i].window, origin, shape)
                        rows[(i, method.label, scale)] = region_metrics(
                            sr[k], hr_np[k], window, mask_threshold
                        )
            bar.update(len(chunk))
    bar.close()
    order = {m.label: k for k, m in enumerate(methods)}
    out = []
    for (i, label, scale), metrics in sorted(
        rows.items(), key=lambda kv: (kv[0][2], order[kv[0][1]], kv[0][0])
    ):
        for region in REGIONS:
            p, s = metrics[region]
            out.append(
                {
                    "image": images[i].name,
                    "method": label,
                    "scale": scale,
                    "region": region,
                    "psnr": p,
                    "ssim": s,
                }
            )
    return out


# ----------------------------------------------------------------------------- tables


def summarize(rows: Sequence[dict], methods: Sequence[Method]) -> list[dict]:
    """Mean / std / min of PSNR and SSIM per method, scale and region (NaNs left out)."""
    params = {m.label: m.params for m in methods}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["scale"], r["region"]), []).append(r)
    order = [m.label for m in methods]
    out = []
    for (label, scale, region), rs in sorted(
        groups.items(), key=lambda kv: (REGIONS.index(kv[0][2]), kv[0][1], order.index(kv[0][0]))
    ):
        p = np.array([r["psnr"] for r in rs], dtype=np.float64)
        s = np.array([r["ssim"] for r in rs], dtype=np.float64)
        p, s = p[~np.isnan(p)], s[~np.isnan(s)]
        out.append(
            {
                "method": label,
                "params": params.get(label),
                "scale": scale,
                "region": region,
                "n": int(p.size),
                "psnr_mean": float(p.mean()) if p.size else math.nan,
                "psnr_std": float(p.std()) if p.size else math.nan,
                "psnr_min": float(p.min()) if p.size else math.nan,
                "ssim_mean": float(s.mean()) if s.size else math.nan,
                "ssim_std": float(s.std()) if s.size else math.nan,
                "ssim_min": float(s.min()) if s.size else math.nan,
            }
        )
    return out


def _fmt(v: float, digits: int) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def format_params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.3f}M ({n:,})"


def write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _csv_value(r.get(k)) for k in columns})


def _csv_value(v):
    if isinstance(v, Fraction):
        return scale_label(v)
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return "" if v is None else v


SUMMARY_COLUMNS = (
    "method", "params", "scale", "region", "n",
    "psnr_mean", "psnr_std", "psnr_min", "ssim_mean", "ssim_std", "ssim_min",
)  # fmt: skip
ROW_COLUMNS = ("image", "method", "scale", "region", "psnr", "ssim")


def markdown_table(summary: Sequence[dict], methods: Sequence[Method], info: dict) -> str:
    """The run's tables as Markdown: settings, Table 1 at x2, then one table per region."""
    labels = [m.label for m in methods]
    by_key = {(r["method"], r["scale"], r["region"]): r for r in summary}
    scales = sorted({r["scale"] for r in summary})
    crop = info["crop_size"]
    lines = [
        "# Evaluation: PSNR and SSIM by scale",
        "",
        f"- data: `{info['data']}`, {info['n_images']} HR slices "
        f"({', '.join(info['sources'])}); intensities mapped to [0, 1] per volume "
        "(0.5 / 99.5 percentiles of non-zero voxels)",
        f"- LR input: {info['degradation_text']}; HR cropped (never resized) so that "
        "LR size x scale = HR size exactly",
        "- PSNR and SSIM with **data_range = 1.0** on [0, 1] images, outputs clamped to "
        "[0, 1]; SSIM: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03 (Wang et al. 2004)",
        f"- regions: crop = maximal-information {crop[0]}x{crop[1]} window (whole slice when "
        f"smaller); slice = whole slice; brain = pixels with HR > {info['mask_threshold']:g}",
        "- mean ± std over slices (population std); fixed-scale models only at their scale",
    ]
    for m in methods:
        for note in m.notes:
            lines.append(f"- **{m.label}: {note}**")
    lines.append("")
    two = Fraction(2)
    if two in scales:
        lines += [f"## Table 1 layout at x2 ({REGION_TITLES['crop']})", ""]
        present = [lab for lab in labels if (lab, two, "crop") in by_key]
        lines.append("| | " + " | ".join(present) + " |")
        lines.append("|---" * (len(present) + 1) + "|")
        cells = [by_key[(lab, two, "crop")] for lab in present]
        lines.append(
            "| PSNR mean / std (dB) | "
            + " | ".join(f"{_fmt(c['psnr_mean'], 2)} / {_fmt(c['psnr_std'], 3)}" for c in cells)
            + " |"
        )
        lines.append(
            "| SSIM mean / std | "
            + " | ".join(f"{_fmt(c['ssim_mean'], 4)} / {_fmt(c['ssim_std'], 4)}" for c in cells)
            + " |"
        )
        lines.append(
            "| parameters | "
            + " | ".join(format_params(m.params) for m in methods if m.label in present)
            + " |"
        )
        lines.append("")
    for region in REGIONS:
        title = REGION_TITLES[region]
        if region == "crop":
            title += f" {crop[0]}x{crop[1]}"
        lines += [f"## {title[0].upper() + title[1:]}: PSNR (dB) / SSIM, mean ± std", ""]
        lines.append("| scale | " + " | ".join(labels) + " |")
        lines.append("|---" * (len(labels) + 1) + "|")
        for scale in scales:
            cells = [scale_label(scale)]
            for lab in labels:
                r = by_key.get((lab, scale, region))
                cells.append(
                    ""
                    if r is None
                    else f"{_fmt(r['psnr_mean'], 2)} ± {_fmt(r['psnr_std'], 2)} / "
                    f"{_fmt(r['ssim_mean'], 4)} ± {_fmt(r['ssim_std'], 4)}"
                )
            lines.append("| " + " | ".join(cells) + " |")
        params = [format_params(m.params) for m in methods]
        lines.append("| parameters | " + " | ".join(params) + " |")
        lines.append("")
    return "\n".join(lines)


def worst_cases(rows: Sequence[dict], methods: Sequence[Method], region: str = "crop") -> str:
    """Markdown: for each model, the slice and scale where it loses most PSNR to bicubic."""
    bicubic = {
        (r["image"], r["scale"]): r["psnr"]
        for r in rows
        if r["method"] == "Bicubic" and r["region"] == region and math.isfinite(r["psnr"])
    }
    lines = [
        f"## Worst slice per model ({REGION_TITLES[region]}): largest PSNR loss to bicubic",
        "",
        "| model | slice | scale | PSNR (dB) | bicubic PSNR (dB) | difference (dB) |",
        "|---|---|---|---|---|---|",
    ]
    any_row = False
    for m in methods:
        if m.model is None:
            continue
        cases = [
            (r["psnr"] - bicubic[(r["image"], r["scale"])], r)
            for r in rows
            if r["method"] == m.label
            and r["region"] == region
            and (r["image"], r["scale"]) in bicubic
            and math.isfinite(r["psnr"])
        ]
        if not cases:
            continue
        diff, r = min(cases, key=lambda c: c[0])
        any_row = True
        lines.append(
            f"| {m.label} | {r['image']} | {scale_label(r['scale'])} | {r['psnr']:.2f} | "
            f"{bicubic[(r['image'], r['scale'])]:.2f} | {diff:+.2f} |"
        )
    return "\n".join(lines) + "\n" if any_row else ""


def by_source(rows: Sequence[dict], methods: Sequence[Method], region: str = "crop") -> str:
    """Markdown: mean PSNR / SSIM per source volume and method, over its slices and scales.

    Slices of one volume are not independent samples; this shows whether one scan drives
    the overall mean.  Empty when there is a single source.
    """
    sources = sorted({r["image"].split(":")[0] for r in rows})
    if len(sources) < 2:
        return ""
    labels = [m.label for m in methods]
    lines = [
        f"## Per source volume ({REGION_TITLES[region]}): PSNR (dB) / SSIM, mean over slices "
        "and scales",
        "",
        "Each method over the scales it runs at (a fixed-scale model: its own scale only).",
        "",
        "| source | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for src in sources:
        cells = [src]
        for lab in labels:
            mine = [
                r
                for r in rows
                if r["method"] == lab
                and r["region"] == region
                and r["image"].split(":")[0] == src
                and math.isfinite(r["psnr"])
            ]
            if not mine:
                cells.append("")
                continue
            p = np.mean([r["psnr"] for r in mine])
            q = np.mean([r["ssim"] for r in mine])
            cells.append(f"{p:.2f} / {q:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(
    out_dir: str | os.PathLike,
    rows: Sequence[dict],
    methods: Sequence[Method],
    info: dict,
) -> list[dict]:
    """Write ``per_image.csv``, ``table.csv`` and ``table.md``; return the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows, methods)
    write_csv(out_dir / "per_image.csv", rows, ROW_COLUMNS)
    write_csv(out_dir / "table.csv", summary, SUMMARY_COLUMNS)
    text = markdown_table(summary, methods, info)
    extras = [t for t in (by_source(rows, methods), worst_cases(rows, methods)) if t]
    (out_dir / "table.md").write_text("\n".join([text, *extras]))
    return summary


def degradation_text(kind: str) -> str:
    return {
        "bicubic": "antialiased bicubic downscaling of HR (the paper's protocol)",
        "kspace": "k-space truncation of HR (central frequencies kept)",
    }.get(kind, kind)
