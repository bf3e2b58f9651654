"""Scoring the band trust's noise gate on the validation slabs, after training.

Run (repository root, the project's venv)::

    .venv/bin/python -m benchmarks.bench_band_gate [--model FILE] [--out TABLE.md]

A data-consistent k-space model keeps its input's acquired band as far as the band trust
says (:meth:`metasrgan.models.MetaSRGAN.band_trust`): a logistic function of the log noise
level (slope, threshold) times a fixed rule on the band's edge.  Training learned the noise
half soft: clean inputs keep only 60-90% of their band.  One reason is partial Fourier,
which no rule detects and whose band is not what a plain matrix measures.

This grid scores each (slope, threshold) by the model's mean PSNR gain over zero-filled sinc
(maximal-information crop, :mod:`metasrgan.evaluation.protocol`) on the held-out validation
slabs, for every k-space variant the training mixture has: a plain matrix, Rician noise of
0.5%, 1% and 3%, Hamming and Tukey filters, partial Fourier 70%.  The criterion is the mean
over the variants, the row it marks.  The unseen scans play no part; what the marked gate
did on them, and why it was not shipped: ``benchmarks/README.md``, "The band trust's noise
gate".
"""

from __future__ import annotations

import argparse
import itertools
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

VALIDATION = "mni152_val,colin27_val"
KSPACE = {"name": "kspace"}
VARIANTS: dict[str, object] = {
    "plain": "kspace",
    "noise 0.5%": {"acquisition": "kspace",
                   "steps": [KSPACE, {"name": "noise", "args": {"sigma": 0.005}}]},
    "noise 1%": {"acquisition": "kspace",
                 "steps": [KSPACE, {"name": "noise", "args": {"sigma": 0.01}}]},
    "noise 3%": "kspace-noise",
    "Hamming": "kspace-hamming",
    "Tukey": {"acquisition": "kspace", "steps": [{"name": "kspace", "args": {"window": "tukey"}}]},
    "partial Fourier 70%": {"acquisition": "kspace",
                            "steps": [{"name": "kspace", "args": {"partial_fourier": 0.7}}]},
}  # fmt: skip
"""The k-space variants of ``configs/shipped.yaml``'s mixture, as evaluation chains."""


def cases(data: str, max_images: int, scales: list[Fraction]) -> list[tuple]:
    """``(variant, prepared batch, metric window, HR crop, sinc PSNR)`` for every slice,
    variant and scale (degraded once, shared by every gate)."""
    from metasrgan.degradations import make_chain
    from metasrgan.evaluation.inputs import load_images
    from metasrgan.evaluation.protocol import information_window, prepare, shift_window
    from metasrgan.interpolation import sinc
    from metasrgan.metrics import psnr

    out = []
    for image in load_images(data, max_images):
        window = information_window(image.array, (128, 128))
        hr = torch.from_numpy(image.array)[None, None]
        for name, spec in VARIANTS.items():
            chain = make_chain(spec)
            for scale in scales:
                batch = prepare(hr, scale, chain)
                shape = tuple(batch.hr.shape[-2:])
                t, left, h, w = shift_window(window, batch.origin, shape)
                crop = (slice(t, t + h), slice(left, left + w))
                target = batch.hr[0, 0].numpy()[crop]
                base = psnr(sinc(batch.lr, shape)[0, 0].clamp(0, 1).numpy()[crop], target, 1.0)
                out.append((name, batch, crop, target, base))
    return out


@torch.no_grad()
def score(model: torch.nn.Module, gate: tuple[float, float], prepared: list) -> dict[str, float]:
    """``{variant: mean PSNR gain over sinc}`` with the noise gate set to ``gate``
    (slope, threshold); the model's own gate is restored afterwards."""
    from metasrgan.inference import upscale_tensor
    from metasrgan.metrics import psnr

    saved = model.band_gate.detach().clone()
    model.band_gate.data = torch.tensor([gate[0], math.log(gate[1])], dtype=saved.dtype)
    gains: dict[str, list[float]] = {}
    try:
        for name, batch, crop, target, base in prepared:
            shape = tuple(batch.hr.shape[-2:])
            sr = upscale_tensor(model, batch.lr, batch.scale, shape, acquisition="kspace")
            gains.setdefault(name, []).append(psnr(sr[0, 0].numpy()[crop], target, 1.0) - base)
    finally:
        model.band_gate.data = saved
    return {name: float(np.mean(v)) for name, v in gains.items()}


def main() -> None:
    from metasrgan.checkpoint import load_model
    from metasrgan.inference import shipped_model_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model file (default: the shipped one)")
    parser.add_argument("--data", default=VALIDATION)
    parser.add_argument("--max-images", type=int, default=12)
    parser.add_argument("--scales", default="1.2,2,2.8,3.6")
    parser.add_argument("--slopes", default="1.5,2,3")
    parser.add_argument("--thresholds", default="0.012,0.015,0.018,0.025")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    model = load_model(args.model or shipped_model_path()).eval()
    own = tuple(model.band_gate.tolist())
    slopes, thresholds = (list(map(float, a.split(","))) for a in (args.slopes, args.thresholds))
    gates = [(own[0], math.exp(own[1])), *itertools.product(slopes, thresholds)]
    scales = [Fraction(s).limit_denominator(10) for s in args.scales.split(",")]
    prepared = cases(args.data, args.max_images, scales)
    rows = [(gate, score(model, gate, prepared)) for gate in gates]
    best = max(range(len(rows)), key=lambda i: np.mean(list(rows[i][1].values())))
    names = list(VARIANTS)
    lines = [
        f"Mean PSNR gain over zero-filled sinc (dB), {args.data}, scales {args.scales}, "
        f"{args.max_images} slices; first row: the file's own gate.",
        "",
        "| slope | threshold | " + " | ".join(names) + " | mean |",
        "|---:|---:|" + "---:|" * (len(names) + 1),
    ]
    for i, (gate, row) in enumerate(rows):
        mark = " **(best)**" if i == best else ""
        cells = " | ".join(f"{row[n]:+.2f}" for n in names)
        lines.append(f"| {gate[0]:.2f} | {gate[1]:.4f} | {cells} | "
                     f"{np.mean(list(row.values())):+.3f}{mark} |")  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
