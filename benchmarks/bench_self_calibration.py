"""What self-calibration changes, scan by scan: the same weights with and without it.

Run (repository root, the project's venv)::

    .venv/bin/python -m benchmarks.bench_self_calibration [--data SCANS] [--model FILE]
    .venv/bin/python -m benchmarks.bench_self_calibration --reference --data mni152_val,colin27_val

For each scan kind and degradation, the mean PSNR gain (dB) of the model over the best
classical interpolation at each scale (bicubic, Lanczos-3, cubic B-spline, zero-filled sinc;
:func:`metasrgan.evaluation.run.evaluate`, maximal-information crop), with
``self_calibrate`` off and on, and the mean gains the calibration fitted beyond the band
and within it (:mod:`metasrgan.models.calibration`).  The default data are the unseen
scans of the model card, ``--max-images`` evenly spaced slices of each;
``--data mni152_val,colin27_val`` runs the held-out validation slabs instead.
Writes a Markdown table to stdout (and ``--out``).

``--oracle`` asks how far the calibration is from the best it could be: on k-space input,
PSNR of the calibrated output against the best single gain beyond the band and the best
pair of gains for its near (up to 1.5x the band) and far parts, both chosen with the HR
image (so out of reach at inference).

``--reference`` measures instead what :data:`metasrgan.models.calibration.REFERENCE_FIT`
holds: per acquisition, the raw fitted gain against the best gain (the least-squares one
against the HR image), their least-squares ratio over every slice and scale.
"""

from __future__ import annotations

import argparse
import collections
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

UNSEEN = "inia19_macaque,epi_nibabel,mr_small_pydicom"
CLASSICAL = ("bicubic", "lanczos", "bspline", "sinc")
DEGRADATIONS = ("kspace", "kspace-noise", "thick", "bicubic", "bicubic-noise")


def variants(path: str | None) -> dict[str, torch.nn.Module]:
    """The model file's weights with ``self_calibrate`` off and on."""
    from metasrgan.checkpoint import load_model
    from metasrgan.inference import shipped_model_path
    from metasrgan.registry import with_args

    trained = load_model(path or shipped_model_path()).eval()
    return {"calibrated" if on else "as trained": with_args(trained, self_calibrate=on)
            for on in (False, True)}  # fmt: skip


class GainLog(torch.nn.Module):
    """The calibrated model, recording the gains of each image it upscales."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.gains = model, []
        self.acquisitions, self.uses_noise = model.acquisitions, model.uses_noise

    def forward(self, x, scale, out_shape=None, acquisition=None, noise=None):
        from metasrgan.scale import Scale2d

        shape = out_shape or Scale2d.of(scale).out_shape(*x.shape[-2:])
        thinned = (shape[0] > x.shape[-2], shape[1] > x.shape[-1])
        gains = self.model.calibration_gains(x, acquisition, noise, thinned=thinned)
        self.gains += gains.tolist()
        return self.model(x, scale, out_shape, acquisition, noise, gains)


@torch.no_grad()
def reference_fits(model: torch.nn.Module, scans: dict[str, list]) -> dict[str, tuple]:
    """``{acquisition: (beyond, within)}``: the raw fits (``REFERENCE_FIT`` not divided out)
    over the best gains against the HR image, least squares over every image and scale of
    ``scans`` (within: clean blurred input only, as the calibration fits it)."""
    from metasrgan.degradations.fourier import acquired_band
    from metasrgan.evaluation.protocol import prepare
    from metasrgan.models import calibration

    saved, calibration.REFERENCE_FIT = calibration.REFERENCE_FIT, {}
    pairs: dict[tuple, list] = collections.defaultdict(list)
    try:
        for images in scans.values():
            hr = torch.from_numpy(np.stack([im.array for im in images]))[:, None]
            for acq in ("kspace", "thick", "bicubic"):
                for s in SCALES["thick" if acq == "thick" else "in-plane"]:
                    b = prepare(hr, s, acq)
                    shape, band = tuple(b.hr.shape[-2:]), tuple(b.lr.shape[-2:])
                    terms = model.calibration_terms(b.lr, acq, None, (True, acq != "thick"))
                    noise = model.noise_level(b.lr)
                    r = model.residual(model.extract_features(b.lr, noise), b.scale, shape, acq)
                    parts = {"beyond": r - acquired_band(r, band), "within": acquired_band(r, band)}
                    off = {"beyond": (0.0, 1.0), "within": (1.0, 0.0)}
                    for k, (name, part) in enumerate(parts.items()):
                        if terms[:, 2 * k + 1].eq(0).all():
                            continue  # not fitted (k-space's band; noisy input)
                        target = b.hr - model(b.lr, b.scale, shape, acq, noise, off[name])
                        inside = acquired_band(target, band)
                        target = target - inside if name == "beyond" else inside
                        best = (part * target).sum((1, 2, 3)) / part.square().sum((1, 2, 3))
                        fit = terms[:, 2 * k] / terms[:, 2 * k + 1]
                        pairs[(acq, name)] += list(zip(fit.tolist(), best.tolist(), strict=True))
    finally:
        calibration.REFERENCE_FIT = saved
    out: dict[str, tuple] = {}
    for (acq, name), v in pairs.items():
        fit, best = np.array(v).T
        out[acq] = (*out.get(acq, ()), f"{name} {(fit * fit).sum() / (fit * best).sum():.3f}")
    return out


def _best_gain(part: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The least-squares gain of ``part`` against ``target`` per image, in [0, 1]."""
    gain = (part * target).sum((1, 2, 3)) / part.square().sum((1, 2, 3)).clamp(min=1e-30)
    return gain.clamp(0, 1)[:, None, None, None]


@torch.no_grad()
def oracle_rows(model: torch.nn.Module, scans: dict[str, list]) -> list[str]:
    """Markdown rows: calibrated / best one gain / best two gains, PSNR on k-space input."""
    from metasrgan.degradations.fourier import acquired_band
    from metasrgan.evaluation.protocol import prepare
    from metasrgan.metrics import psnr

    rows = []
    for kind, images in scans.items():
        hr_all = torch.from_numpy(np.stack([im.array for im in images]))[:, None]
        for s in (Fraction(2), Fraction(14, 5), Fraction(4)):
            b = prepare(hr_all, s, "kspace")
            band, shape = tuple(b.lr.shape[-2:]), tuple(b.hr.shape[-2:])
            noise = model.noise_level(b.lr)
            r = model.residual(model.extract_features(b.lr, noise), b.scale, shape, "kspace")
            base = model(b.lr, b.scale, shape, "kspace", noise, (0.0, 1.0))
            beyond = r - acquired_band(r, band)
            wide = tuple(min(n, round(1.5 * m)) for n, m in zip(shape, band, strict=True))
            near = acquired_band(beyond, wide)
            target = b.hr - base
            target = target - acquired_band(target, band)

            far = beyond - near
            outputs = {
                "calibrated": model(b.lr, b.scale, shape, "kspace", noise),
                "best one gain": base + _best_gain(beyond, target) * beyond,
                "best two gains": base
                + _best_gain(near, target) * near
                + _best_gain(far, target) * far,
            }
            hr = b.hr[:, 0].double().numpy()
            cells = [np.mean([psnr(o[k, 0].clamp(0, 1).double().numpy(), hr[k], 1.0)
                              for k in range(len(hr))]) for o in outputs.values()]  # fmt: skip
            rows.append(
                f"| {kind} | x{float(s):g} | " + " | ".join(f"{c:.2f}" for c in cells) + " |"
            )
    return rows


SCALES = {
    "thick": [Fraction(s) for s in (2, 3, 4, 5, 6)],
    "in-plane": [Fraction(6, 5) + Fraction(2, 5) * k for k in range(8)],
}


def main() -> None:
    from metasrgan.evaluation.inputs import load_images
    from metasrgan.evaluation.methods import Method
    from metasrgan.evaluation.run import evaluate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=UNSEEN)
    parser.add_argument("--model", help="a model file (default: the shipped model)")
    parser.add_argument("--max-images", type=int, default=8, help="slices of each scan")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--reference", action="store_true", help="measure REFERENCE_FIT")
    parser.add_argument("--oracle", action="store_true", help="the calibration against its best")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    models = variants(args.model)
    logged = GainLog(models["calibrated"])
    methods = [Method(n, interpolation=n) for n in CLASSICAL]
    methods += [
        Method("as trained", model=models["as trained"]),
        Method("calibrated", model=logged),
    ]
    scans = {name: load_images(name, max_images=args.max_images) for name in args.data.split(",")}
    if args.oracle:
        print("| scans | scale | calibrated | best one gain | best two gains |")
        print("|---|---|---:|---:|---:|")
        print("\n".join(oracle_rows(models["calibrated"], scans)))
        return
    if args.reference:
        refs = reference_fits(models["calibrated"], scans)
        print("\n".join(f"{acq}: {', '.join(ref)}" for acq, ref in refs.items()))
        return
    lines = ["| degradation | scans | as trained | calibrated | gains fitted (beyond, within) |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    for deg in DEGRADATIONS:
        scales = SCALES["thick" if deg.startswith("thick") else "in-plane"]
        for kind, images in scans.items():
            logged.gains.clear()
            rows = evaluate(images, methods, scales, deg, progress=False)
            per = collections.defaultdict(lambda: collections.defaultdict(list))
            for r in rows:
                if r["region"] == "crop":
                    per[r["scale"]][r["method"]].append(r["psnr"])
            cells = []
            for label in ("as trained", "calibrated"):
                gains = [np.mean(by[label]) - max(np.mean(by[c]) for c in CLASSICAL)
                         for by in per.values()]  # fmt: skip
                cells.append(f"{np.mean(gains):+.2f}")
            beyond, within = np.mean(logged.gains, axis=0)
            lines.append(f"| {deg} | {kind} | {cells[0]} | {cells[1]} | "
                         f"{beyond:.2f}, {within:.2f} |")  # fmt: skip
    text = "\n".join(lines)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
