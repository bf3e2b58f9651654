"""The evaluation's pictures: metrics against scale, and the paper's Figures 7 and 8.

- ``plot.png``: PSNR, SSIM and the PSNR gain over bicubic against scale, every method.
- ``fig7.png`` (paper Fig. 7): HR and every method side by side at x2 on one slice, each
  with a zoomed inset of its most detailed region and PSNR / SSIM underneath.
- ``fig8.png`` (paper Fig. 8): one slice through many scales, bicubic in the top row and
  each arbitrary-scale model below, PSNR / SSIM under each panel.

Panels show the slice's maximal-information crop (where the metrics are measured) in gray
with the fixed display range [0, 1].  Matplotlib is used through its object API with the
Agg canvas, so nothing touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from metasrgan.evaluation import (
    EvalImage,
    Method,
    information_window,
    prepare,
    region_metrics,
    scale_label,
    shift_window,
    upscale,
)

DPI = 120


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def plot_sweep(
    summary: Sequence[dict], methods: Sequence[Method], path: str | Path, region: str = "crop"
) -> Path:
    """PSNR, SSIM and PSNR - the best classical method against scale (means over slices)
    for every method (``summary`` of one degradation)."""
    rows = [r for r in summary if r["region"] == region]
    classical = {m.label for m in methods if m.classical}
    best: dict = {}
    for r in rows:
        if r["method"] in classical:
            best[r["scale"]] = max(best.get(r["scale"], -math.inf), r["psnr_mean"])
    fig = _figure(15, 4.2)
    axes = fig.subplots(1, 3)
    n = max((r["n"] for r in rows), default=0)
    for m in methods:
        mine = sorted((r for r in rows if r["method"] == m.label), key=lambda r: r["scale"])
        if not mine:
            continue
        x = [float(r["scale"]) for r in mine]
        style = {"marker": "o", "markersize": 4 if len(x) > 1 else 8, "label": m.label}
        if m.model is None:
            style.update(color="black", linestyle="--", zorder=3)
        axes[0].plot(x, [r["psnr_mean"] for r in mine], **style)
        axes[1].plot(x, [r["ssim_mean"] for r in mine], **style)
        gain = [r["psnr_mean"] - best.get(r["scale"], math.nan) for r in mine]
        axes[2].plot(x, gain, **style)
    axes[2].axhline(0.0, color="black", linewidth=0.8)
    for ax, label in zip(axes, ("PSNR (dB)", "SSIM", "PSNR - best classical (dB)"), strict=True):
        ax.set_xlabel("scale")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Mean over {n} slices, {region} region, data_range 1.0")
    fig.tight_layout()
    return _save(fig, path)


def pick_figure_image(images: Sequence[EvalImage], name: str | None = None) -> EvalImage:
    """The slice named ``name`` (or its index), else the one with the most non-zero pixels."""
    if name is not None:
        if name.isdigit() and int(name) < len(images):
            return images[int(name)]
        for im in images:
            if im.name == name:
                return im
        raise ValueError(
            f"--figure-image {name!r} is neither an index below {len(images)} nor a slice name "
            f"(e.g. {images[0].name})"
        )
    return max(images, key=lambda im: (np.count_nonzero(im.array), -images.index(im)))


def pick_figure_scales(scales: Sequence[Fraction], count: int = 6) -> list[Fraction]:
    """Up to ``count`` scales for Figure 8: the half-integers 1.5 .. 4 when swept, else spread."""
    preferred = [Fraction(k, 2) for k in range(3, 9)]
    chosen = [s for s in preferred if s in scales]
    if len(chosen) >= min(count, len(scales), 4):
        return chosen[:count]
    scales = sorted(scales)
    if len(scales) <= count:
        return list(scales)
    idx = np.unique(np.linspace(0, len(scales) - 1, count).round().astype(int))
    return [scales[i] for i in idx]


def _run_one(
    image: EvalImage,
    method: Method,
    scale: Fraction,
    degradation,
    crop_size: tuple[int, int],
    mask_threshold: float,
):
    """(hr crop, sr crop, psnr, ssim) of one method on one slice at one scale."""
    hr_full = torch.from_numpy(np.ascontiguousarray(image.array))[None, None]
    batch = prepare(hr_full, scale, degradation)
    shape = tuple(batch.hr.shape[-2:])
    sr = upscale(method, batch.lr, batch.scale, shape, batch.acquisition)
    sr = sr[0, 0].numpy().astype(np.float64)
    hr_np = batch.hr[0, 0].numpy().astype(np.float64)
    window = image.window or information_window(image.array, crop_size)
    window = shift_window(window, batch.origin, shape)
    p, s = region_metrics(sr, hr_np, window, mask_threshold)["crop"]
    t, left, h, w = window
    return hr_np[t : t + h, left : left + w], sr[t : t + h, left : left + w], p, s


def _deg_name(degradation) -> str:
    return degradation if isinstance(degradation, str) else degradation.text


def _detail_box(image: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left of the ``side`` square with the most gradient energy (the inset's source).

    Only squares centred in the middle half of the crop (the brain, for a
    maximal-information crop) and free of zero pixels are considered where possible, so the
    inset shows anatomy rather than the edge of the head.
    """
    from scipy.ndimage import minimum_filter, uniform_filter

    gy, gx = np.gradient(image)
    h, w = image.shape
    half = side // 2
    valid = (slice(half, h - side + half + 1), slice(half, w - side + half + 1))
    energy = uniform_filter(np.hypot(gy, gx), size=side, mode="constant")[valid]
    if energy.size == 0:
        return 0, 0
    inside = minimum_filter(image, size=side, mode="constant")[valid] > 0
    ys, xs = np.mgrid[: energy.shape[0], : energy.shape[1]]
    central = (np.abs(ys + half - h / 2) <= h / 4) & (np.abs(xs + half - w / 2) <= w / 4)
    if (inside & central).any():
        inside &= central
    if inside.any():
        energy = np.where(inside, energy, -np.inf)
    y, x = np.unravel_index(int(np.argmax(energy)), energy.shape)
    return int(y), int(x)


def _inset_corner(shape: tuple[int, int], top_left: tuple[int, int], side: int) -> list[float]:
    """The axes corner ``[x0, y0, w, h]`` for the inset that hides least of the source box."""
    size = 0.42
    h, w = shape
    box = (top_left[1] / w, 1 - (top_left[0] + side) / h, side / w, side / h)  # axes coords

    def overlap(x0: float, y0: float) -> float:
        dx = min(x0 + size, box[0] + box[2]) - max(x0, box[0])
        dy = min(y0 + size, box[1] + box[3]) - max(y0, box[1])
        return max(dx, 0.0) * max(dy, 0.0)

    corners = [(1 - size, 1 - size), (0.0, 1 - size), (1 - size, 0.0), (0.0, 0.0)]
    x0, y0 = min(corners, key=lambda c: overlap(*c))
    return [x0, y0, size, size]


def _show(ax, image: np.ndarray, title: str | None = None, xlabel: str | None = None) -> None:
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8)


def _metric_text(p: float, s: float) -> str:
    return f"{p:.2f} dB / {s:.4f}"


def figure7(
    image: EvalImage,
    methods: Sequence[Method],
    path: str | Path,
    scale: Fraction = Fraction(2),
    degradation="bicubic",
    crop_size: tuple[int, int] = (128, 128),
    mask_threshold: float = 0.0,
) -> Path:
    """HR and every method that runs at ``scale`` side by side, with zoomed insets."""
    from matplotlib.patches import Rectangle

    panels = []
    hr_crop = None
    for m in methods:
        if not m.runs_at(scale):
            continue
        hr_crop, sr, p, s = _run_one(image, m, scale, degradation, crop_size, mask_threshold)
        panels.append((m.label, sr, _metric_text(p, s)))
    if hr_crop is None:
        raise ValueError(f"no method runs at x{scale_label(scale)}")
    panels.insert(0, ("HR (ground truth)", hr_crop, "PSNR / SSIM"))
    side = max(8, min(hr_crop.shape) // 4)
    y, x = _detail_box(hr_crop, side)
    corner = _inset_corner(hr_crop.shape, (y, x), side)
    fig = _figure(2.6 * len(panels), 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, img, text) in zip(axes, panels, strict=True):
        _show(ax, img, label, text)
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), side, side, fill=False, color="yellow", lw=1))
        inset = ax.inset_axes(corner)
        _show(inset, img[y : y + side, x : x + side])
        for spine in inset.spines.values():
            spine.set_color("yellow")
    fig.suptitle(f"{image.name}, x{scale_label(scale)} ({_deg_name(degradation)} LR)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def figure8(
    image: EvalImage,
    methods: Sequence[Method],
    scales: Sequence[Fraction],
    path: str | Path,
    degradation="bicubic",
    crop_size: tuple[int, int] = (128, 128),
    mask_threshold: float = 0.0,
) -> Path:
    """One slice through ``scales``: a row per classical method given, then one row per
    arbitrary-scale model."""
    rows = [m for m in methods if m.model is None] + [
        m for m in methods if m.model is not None and m.fixed_scale is None
    ]
    if not scales:
        raise ValueError("Figure 8 needs at least one scale")
    fig = _figure(2.2 * (len(scales) + 1), 2.5 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), len(scales) + 1, squeeze=False)
    for r, m in enumerate(rows):
        for c, scale in enumerate(scales):
            hr, sr, p, s = _run_one(image, m, scale, degradation, crop_size, mask_threshold)
            _show(axes[r, c + 1], sr, f"x{scale_label(scale)}" if r == 0 else None)
            axes[r, c + 1].set_xlabel(_metric_text(p, s), fontsize=8)
            if c == 0:
                ref = hr
        axes[r, 1].set_ylabel(m.label, fontsize=9)
        if r == 0:
            _show(axes[0, 0], ref, "HR (ground truth)")
        else:
            axes[r, 0].set_axis_off()
    fig.suptitle(
        f"{image.name}: PSNR / SSIM under each panel ({_deg_name(degradation)} LR, crop region)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)
