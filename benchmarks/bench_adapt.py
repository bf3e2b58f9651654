"""In-plane k-space truncation of whole unseen volumes: metasrgan as shipped and adapted to
each volume (``--adapt``), against zero-filled sinc and cubic B-spline.

Each volume's axial slices lose their outer k-space (a smaller matrix, the ``kspace``
degradation, periodic); the low-resolution volume goes through ``metasrgan.api.upscale``
(``scale``, ``acquisition="kspace"``) with and without adaptation, which sees only the
low-resolution volume.  Scores: intensities over the reference's 99.5th percentile in the
anatomy, clipped to [0, 1]; PSNR over the anatomy's voxels (reference above 5% of that
range), SSIM over the same voxels of each axial slice (11x11 Gaussian window).

    python -m benchmarks.bench_adapt --threads 2 --adapt 200 --csv rows.csv [--ensemble]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

INIA19 = Path("/usr/share/mricron/templates/inia19-t1-brain.nii.gz")
VOLUMES = {
    "inia19": (INIA19, "20:148,30:174,40:80"),
    "epi_nibabel": (None, "0:128,0:96,0:24"),
}
"""name: (file, None for the bundled sample of that name; crop)."""


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    from benchmarks.bench_through_plane import load_reference, parse_crop
    from metasrgan.samples_path import sample_path

    path, crop = VOLUMES[name]
    return load_reference(path or sample_path(name), parse_crop(crop))


def kspace_lr(hr: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The reference cropped to a multiple of the scale's numerator in-plane, and each
    axial slice's central k-space at ``1 / scale`` of the matrix."""
    import torch

    from metasrgan.degradations import fourier_resize
    from metasrgan.scale import AxisScale

    a = AxisScale.of(scale)
    n0, n1 = (hr.shape[0] // a.p) * a.p, (hr.shape[1] // a.p) * a.p
    ref = np.ascontiguousarray(hr[:n0, :n1])
    slices = torch.from_numpy(np.moveaxis(ref, 2, 0)).double()
    low = fourier_resize(slices, (a.in_size(n0), a.in_size(n1)), "periodic")
    return ref, np.ascontiguousarray(np.moveaxis(low.float().numpy(), 0, 2))


CLASSICAL = ("sinc", "bspline")
"""The baselines (:data:`metasrgan.interpolation.INTERPOLATORS`): the best two here."""


def classical(lr: np.ndarray, shape: tuple[int, int], method: str) -> np.ndarray:
    """Each axial slice of ``lr`` to ``shape`` by ``metasrgan.interpolation``'s ``method``."""
    import torch

    from metasrgan.interpolation import interpolate

    x = torch.from_numpy(np.moveaxis(lr, 2, 0)).double()[:, None]
    return np.moveaxis(interpolate(x, shape, method)[:, 0].float().numpy(), 0, 2)


def score(out: np.ndarray, ref: np.ndarray, top: float) -> tuple[float, float]:
    from metasrgan.metrics import ssim_map

    a, b = (np.clip(v / top, 0, 1).astype(np.float64) for v in (out, ref))
    mask = b > 0.05
    psnr = 10 * np.log10(1.0 / float(np.mean((a - b)[mask] ** 2)))
    values = [ssim_map(a[..., k], b[..., k], 1.0)[mask[..., k]] for k in range(ref.shape[2])]
    return psnr, float(np.concatenate(values).mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--volumes", nargs="+", default=list(VOLUMES), choices=list(VOLUMES))
    p.add_argument("--scales", type=float, nargs="+", default=[2.0, 3.0, 4.0])
    p.add_argument("--adapt", type=int, nargs="+", default=[200])
    p.add_argument(
        "--ensemble",
        action="store_true",
        help="also run each metasrgan row as a self-ensemble (upscale --ensemble)",
    )
    p.add_argument("--model", default="shipped")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--csv", type=Path)
    args = p.parse_args(argv)
    import torch

    from metasrgan.api import load_model, upscale
    from metasrgan.interpolation import TITLES

    torch.set_num_threads(args.threads)
    model = load_model(None if args.model == "shipped" else args.model, device="cpu")
    rows = []
    for name in args.volumes:
        hr, affine = load(name)
        top = float(np.percentile(hr[hr > 0], 99.5))
        for s in args.scales:
            ref, lr = kspace_lr(hr, s)
            shape = ref.shape[:2]
            nets = [("metasrgan", (0, False))]  # (updates of adaptation, self-ensemble)
            nets += [(f"metasrgan --adapt {n}", (n, False)) for n in args.adapt]
            if args.ensemble:
                nets += [(f"{label} --ensemble", (n, True)) for label, (n, _) in nets]
            runs = [(TITLES[m], m) for m in CLASSICAL] + nets
            for method, how in runs:
                start = time.perf_counter()
                if isinstance(how, tuple):
                    n, ens = how
                    out, _ = upscale(lr, scale=s, model=model, affine=affine,
                                     acquisition="kspace", adapt=n, ensemble=ens)  # fmt: skip
                else:
                    out = classical(lr, shape, how)
                seconds = time.perf_counter() - start
                psnr, ssim = score(out, ref, top)
                rows.append((name, s, method, psnr, ssim, seconds))
                print(f"{name} x{s:g} {method:22s} PSNR {psnr:6.2f} SSIM {ssim:.4f} "
                      f"{seconds:6.1f} s", file=sys.stderr, flush=True)  # fmt: skip
    print("| volume | scale | method | PSNR / SSIM | - sinc | seconds |")
    print("|---|---:|---|---|---|---:|")
    for name, s, method, psnr, ssim, seconds in rows:
        base = next(r for r in rows if r[:2] == (name, s) and r[2] == TITLES["sinc"])
        print(f"| {name} | x{s:g} | {method} | {psnr:.2f} / {ssim:.4f} | "
              f"{psnr - base[3]:+.2f} dB / {ssim - base[4]:+.4f} | {seconds:.1f} |")  # fmt: skip
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["volume", "scale", "method", "psnr_db", "ssim", "seconds"])
            for name, s, method, psnr, ssim, seconds in rows:
                w.writerow([name, s, method, f"{psnr:.4f}", f"{ssim:.5f}", f"{seconds:.2f}"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
