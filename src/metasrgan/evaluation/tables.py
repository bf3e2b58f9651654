"""Evaluation tables: summaries, CSV and Markdown, and the gain over the best classical
baseline per degradation and scale (the comparison users care about: not bicubic alone)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from metasrgan.evaluation.methods import Method
from metasrgan.evaluation.protocol import REGION_TITLES, REGIONS


def scale_label(scale: Fraction) -> str:
    """``2``, ``2.5``, ``1.1``, or ``7/3`` for scales without a short decimal."""
    value = float(scale)
    for digits in range(4):
        if Fraction(f"{value:.{digits}f}") == scale:
            return f"{value:.{digits}f}"
    return f"{scale.numerator}/{scale.denominator}"


def _stats(values: list[float]) -> tuple[float, float, float]:
    a = np.array(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    return (float(a.mean()), float(a.std()), float(a.min())) if a.size else (math.nan,) * 3


def summarize(rows: Sequence[dict], methods: Sequence[Method]) -> list[dict]:
    """Mean / std / min of PSNR and SSIM per degradation, method, scale and region."""
    params = {m.label: m.params for m in methods}
    groups: dict[tuple, list[dict]] = {}
    degradations: list[str] = []
    for r in rows:
        deg = r.get("degradation", "")
        if deg not in degradations:
            degradations.append(deg)
        groups.setdefault((deg, r["method"], r["scale"], r["region"]), []).append(r)
    order = [m.label for m in methods]
    out = []
    for (deg, label, scale, region), rs in sorted(
        groups.items(),
        key=lambda kv: (
            degradations.index(kv[0][0]), REGIONS.index(kv[0][3]), kv[0][2],
            order.index(kv[0][1]),
        ),
    ):  # fmt: skip
        p = _stats([r["psnr"] for r in rs])
        s = _stats([r["ssim"] for r in rs])
        out.append(
            {
                "degradation": deg,
                "method": label,
                "params": params.get(label),
                "scale": scale,
                "region": region,
                "n": sum(1 for r in rs if not math.isnan(r["psnr"])),
                "psnr_mean": p[0],
                "psnr_std": p[1],
                "psnr_min": p[2],
                "ssim_mean": s[0],
                "ssim_std": s[1],
                "ssim_min": s[2],
            }  # fmt: skip
        )
    return out


def best_classical(
    summary: Sequence[dict], methods: Sequence[Method], region: str = "crop"
) -> dict[tuple[str, Fraction], dict]:
    """``(degradation, scale) -> summary row`` of the classical method with the highest mean
    PSNR there (its SSIM is reported beside it; the best SSIM is checked separately)."""
    classical = {m.label for m in methods if m.classical}
    best: dict[tuple[str, Fraction], dict] = {}
    for r in summary:
        if r["region"] != region or r["method"] not in classical:
            continue
        key = (r["degradation"], r["scale"])
        if key not in best or r["psnr_mean"] > best[key]["psnr_mean"]:
            best[key] = r
    return best


def gains(summary: Sequence[dict], methods: Sequence[Method], region: str = "crop") -> list[dict]:
    """Per degradation, model and scale: the model against the best classical baseline.

    ``psnr_gain`` is over the classical method with the best PSNR; ``ssim_gain`` over the
    best classical SSIM (which may be another method)."""
    best = best_classical(summary, methods, region)
    best_ssim: dict[tuple[str, Fraction], float] = {}
    classical = {m.label for m in methods if m.classical}
    for r in summary:
        if r["region"] == region and r["method"] in classical:
            key = (r["degradation"], r["scale"])
            best_ssim[key] = max(best_ssim.get(key, -math.inf), r["ssim_mean"])
    out = []
    for r in summary:
        key = (r["degradation"], r["scale"])
        if r["region"] != region or r["method"] in classical or key not in best:
            continue
        b = best[key]
        out.append(
            {
                "degradation": r["degradation"],
                "method": r["method"],
                "scale": r["scale"],
                "region": region,
                "best_classical": b["method"],
                "best_psnr": b["psnr_mean"],
                "best_ssim": best_ssim[key],
                "psnr": r["psnr_mean"],
                "ssim": r["ssim_mean"],
                "psnr_gain": r["psnr_mean"] - b["psnr_mean"],
                "ssim_gain": r["ssim_mean"] - best_ssim[key],
            }
        )
    return out


def _fmt(v: float | None, digits: int) -> str:
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
    "degradation", "method", "params", "scale", "region", "n",
    "psnr_mean", "psnr_std", "psnr_min", "ssim_mean", "ssim_std", "ssim_min",
)  # fmt: skip
ROW_COLUMNS = ("degradation", "image", "method", "scale", "region", "psnr", "ssim")
GAIN_COLUMNS = (
    "degradation", "method", "scale", "region", "best_classical", "best_psnr", "best_ssim",
    "psnr", "ssim", "psnr_gain", "ssim_gain",
)  # fmt: skip


def gain_markdown(summary: Sequence[dict], methods: Sequence[Method], region: str) -> str:
    """One table per degradation: best classical baseline, each model and its gain."""
    rows = gains(summary, methods, region)
    if not rows:
        return ""
    models = [m.label for m in methods if not m.classical]
    lines = [
        f"## Gain over the best classical baseline ({REGION_TITLES[region]})",
        "",
        "Best classical = the highest mean PSNR among bicubic, Lanczos-3, cubic B-spline and "
        "zero-filled sinc at that degradation and scale; SSIM gains are over the best "
        "classical SSIM.",
        "",
    ]
    for deg in dict.fromkeys(r["degradation"] for r in rows):
        mine = [r for r in rows if r["degradation"] == deg]
        lines += [f"### {deg}", ""]
        header = "| scale | best classical PSNR / SSIM | " + " | ".join(
            f"{m} PSNR / SSIM (gain dB)" for m in models
        )
        lines += [header + " |", "|---" * (2 + len(models)) + "|"]
        for scale in sorted({r["scale"] for r in mine}):
            at = {r["method"]: r for r in mine if r["scale"] == scale}
            first = next(iter(at.values()))
            cells = [
                scale_label(scale),
                f"{first['best_classical']}: {_fmt(first['best_psnr'], 2)} / "
                f"{_fmt(first['best_ssim'], 4)}",
            ]
            for m in models:
                r = at.get(m)
                cells.append(
                    ""
                    if r is None
                    else f"{_fmt(r['psnr'], 2)} / {_fmt(r['ssim'], 4)} ({r['psnr_gain']:+.2f})"
                )
            lines.append("| " + " | ".join(cells) + " |")
        for m in models:
            ms = [r for r in mine if r["method"] == m]
            if ms:
                won = sum(1 for r in ms if r["psnr_gain"] > 0 and r["ssim_gain"] > 0)
                lines.append(
                    f"\n**{m}**: mean gain {np.mean([r['psnr_gain'] for r in ms]):+.2f} dB, "
                    f"worst {min(r['psnr_gain'] for r in ms):+.2f} dB; better in PSNR and SSIM "
                    f"at {won}/{len(ms)} scales."
                )
        lines.append("")
    return "\n".join(lines)


def markdown_table(summary: Sequence[dict], methods: Sequence[Method], info: dict) -> str:
    """The run's tables as Markdown: settings, the gains over the best classical baseline,
    Table 1 at x2, then one table per degradation and region."""
    labels = [m.label for m in methods]
    by_key = {(r["degradation"], r["method"], r["scale"], r["region"]): r for r in summary}
    degradations = list(dict.fromkeys(r["degradation"] for r in summary))
    crop = info["crop_size"]
    texts = info["degradation_text"]
    if isinstance(texts, str):
        texts = {info.get("degradation", ""): texts}
    lines = [
        "# Evaluation: PSNR and SSIM by degradation and scale",
        "",
        f"- data: `{info['data']}`, {info['n_images']} HR slices "
        f"({', '.join(info['sources'])}); intensities mapped to [0, 1] per volume "
        "(0.5 / 99.5 percentiles of non-zero voxels)",
        "- LR inputs: "
        + "; ".join(f"**{k}**: {v}" if k else v for k, v in texts.items())
        + "; HR cropped (never resized) so that LR size x scale = HR size exactly; "
        "thick slices are thinned along the vertical axis only, with scales (s, 1)",
        "- noisy LR is scored against the clean HR",
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
    lines.append(gain_markdown(summary, methods, "crop"))
    two = Fraction(2)
    first = degradations[0] if degradations else ""
    present = [lab for lab in labels if (first, lab, two, "crop") in by_key]
    if present:
        lines += [f"## Table 1 layout at x2 ({first}, {REGION_TITLES['crop']})", ""]
        lines.append("| | " + " | ".join(present) + " |")
        lines.append("|---" * (len(present) + 1) + "|")
        cells = [by_key[(first, lab, two, "crop")] for lab in present]
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
    for deg in degradations:
        scales = sorted({r["scale"] for r in summary if r["degradation"] == deg})
        for region in REGIONS:
            title = REGION_TITLES[region]
            if region == "crop":
                title += f" {crop[0]}x{crop[1]}"
            lines += [f"## {deg}, {title}: PSNR (dB) / SSIM, mean ± std", ""]
            lines.append("| scale | " + " | ".join(labels) + " |")
            lines.append("|---" * (len(labels) + 1) + "|")
            for scale in scales:
                cells = [scale_label(scale)]
                for lab in labels:
                    r = by_key.get((deg, lab, scale, region))
                    cells.append(
                        ""
                        if r is None
                        else f"{_fmt(r['psnr_mean'], 2)} ± {_fmt(r['psnr_std'], 2)} / "
                        f"{_fmt(r['ssim_mean'], 4)} ± {_fmt(r['ssim_std'], 4)}"
                    )
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    lines.append("| parameters | " + " | ".join(format_params(m.params) for m in methods) + " |")
    lines.append("|---" * (len(labels) + 1) + "|")
    lines.append("")
    return "\n".join(lines)


def worst_cases(rows: Sequence[dict], methods: Sequence[Method], region: str = "crop") -> str:
    """Markdown: per model, the slice, degradation and scale where it loses most PSNR to the
    best classical method on that very slice."""
    classical = {m.label for m in methods if m.classical}
    best: dict[tuple, float] = {}
    for r in rows:
        if r["method"] in classical and r["region"] == region and math.isfinite(r["psnr"]):
            key = (r.get("degradation", ""), r["image"], r["scale"])
            best[key] = max(best.get(key, -math.inf), r["psnr"])
    lines = [
        f"## Worst slice per model ({REGION_TITLES[region]}): largest PSNR loss to the best "
        "classical method on that slice",
        "",
        "| model | degradation | slice | scale | PSNR (dB) | best classical (dB) | difference |",
        "|---|---|---|---|---|---|---|",
    ]
    any_row = False
    for m in methods:
        if m.classical:
            continue
        cases = [
            (r["psnr"] - best[key], r)
            for r in rows
            if r["method"] == m.label
            and r["region"] == region
            and math.isfinite(r["psnr"])
            and (key := (r.get("degradation", ""), r["image"], r["scale"])) in best
        ]
        if not cases:
            continue
        diff, r = min(cases, key=lambda c: c[0])
        any_row = True
        lines.append(
            f"| {m.label} | {r.get('degradation', '')} | {r['image']} | "
            f"{scale_label(r['scale'])} | {r['psnr']:.2f} | {r['psnr'] - diff:.2f} | "
            f"{diff:+.2f} |"
        )
    return "\n".join(lines) + "\n" if any_row else ""


def by_source(rows: Sequence[dict], methods: Sequence[Method], region: str = "crop") -> str:
    """Markdown: mean PSNR / SSIM per degradation, source volume and method.

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
        "| degradation | source | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 2) + "|",
    ]
    acc: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows:
        if r["region"] == region and math.isfinite(r["psnr"]):
            key = (r.get("degradation", ""), r["image"].split(":")[0], r["method"])
            acc.setdefault(key, []).append((r["psnr"], r["ssim"]))
    for deg in dict.fromkeys(r.get("degradation", "") for r in rows):
        for src in sources:
            cells = [deg, src]
            for lab in labels:
                v = acc.get((deg, src, lab))
                cells.append("" if not v else f"{np.mean([a for a, _ in v]):.2f} / "
                             f"{np.mean([b for _, b in v]):.4f}")  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(
    out_dir: str | os.PathLike,
    rows: Sequence[dict],
    methods: Sequence[Method],
    info: dict,
) -> list[dict]:
    """Write ``per_image.csv``, ``table.csv``, ``gains.csv`` and ``table.md``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows, methods)
    write_csv(out_dir / "per_image.csv", rows, ROW_COLUMNS)
    write_csv(out_dir / "table.csv", summary, SUMMARY_COLUMNS)
    gain_rows = [g for region in REGIONS for g in gains(summary, methods, region)]
    write_csv(out_dir / "gains.csv", gain_rows, GAIN_COLUMNS)
    text = markdown_table(summary, methods, info)
    extras = [t for t in (by_source(rows, methods), worst_cases(rows, methods)) if t]
    (out_dir / "table.md").write_text("\n".join([text, *extras]))
    return summary
