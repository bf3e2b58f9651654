"""Thick slices to thin: metasrgan against ECLARE and cubic B-spline, on a volume none saw.

Run (repository root, the project's venv; ECLARE in a venv of its own)::

    nice -n 19 .venv/bin/python -m benchmarks.bench_through_plane \\
        --eclare-python /work/eclare-venv/bin/python [--model FILE] [--factors 2 4 5]

1. The high-resolution reference is a crop of the INIA19 macaque T1 template (0.5 mm
   isotropic, skull-stripped; Debian's ``mricron-data``): no model here trained on it (the
   shipped model learned from MNI152 and Colin27).
2. Thick slices are simulated along one voxel axis with the project's own slice profile
   (:func:`metasrgan.degradations.profile.slice_profile_resample`: Gaussian, FWHM = the
   slice spacing, each fine row integrated over its voxel), and written as NIfTI with the
   spacing multiplied along that axis and the project's geometry rule (slice ``k`` at fine
   index ``(k + 0.5) s - 0.5``), so every method's output overlays the reference voxel for
   voxel.  The crop's length along that axis is a multiple of every factor.
3. Methods: cubic B-spline (:func:`metasrgan.interpolation.bspline`, the baseline of
   ``metasrgan evaluate``); metasrgan (:func:`metasrgan.api.upscale` with ``spacing`` =
   the reference's, the shipped model unless ``--model``); ECLARE (Remedios et al.,
   ``pip install eclare``), run as its own CLI in the interpreter ``--eclare-python``,
   told the true slice profile (``--relative-slice-thickness`` = FWHM in in-plane voxels,
   Gaussian) so that its ESPRESO profile estimation is skipped, with ``--eclare-patches``
   training patches instead of its default 1,000,000 (the CPU budget).
4. Scores, against the reference inside the brain (reference > 0): intensities divided by
   the reference's 99.5th percentile in the brain and clipped to [0, 1], the same map for
   every output; PSNR (``data_range`` 1) over the brain voxels; SSIM
   (:func:`metasrgan.metrics.ssim_map`, 11x11 Gaussian window) on the slices perpendicular
   to the first in-plane axis (they contain the thick axis), averaged over the brain voxels
   away from each slice's 5-voxel border.  Wall seconds per method and factor.

ECLARE's outputs are cached in ``--work`` under a name made of its settings, so a rerun
with another ``--model`` repeats only the cheap methods (``--rerun-eclare`` forces it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INIA19 = Path("/usr/share/mricron/templates/inia19-t1-brain.nii.gz")
DEFAULT_CROP = "52:116,65:129,0:120"
"""64 x 64 voxels (32 x 32 mm) of central brain in-plane, 120 slices (60 mm) through-plane:
small enough for ECLARE on one CPU thread; 120 is a multiple of 2, 3, 4, 5 and 6."""

ECLARE_MAIN = "import sys; from eclare.main import main; main(sys.argv[1:])"


@dataclass
class Row:
    factor: int
    method: str
    psnr: float
    ssim: float
    seconds: float
    note: str = ""


# ---------------------------------------------------------------------------- data
def parse_crop(text: str) -> tuple[slice, slice, slice]:
    parts = [p.split(":") for p in text.split(",")]
    if len(parts) != 3 or any(len(p) != 2 for p in parts):
        raise argparse.ArgumentTypeError(f"--crop takes a:b,c:d,e:f, got {text!r}")
    return tuple(slice(int(a), int(b)) for a, b in parts)


def load_reference(path: Path, crop: tuple[slice, slice, slice]):
    """The cropped volume (float32) and its affine (the crop's origin moved in)."""
    import nibabel as nib

    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)[crop]
    shift = np.eye(4)
    shift[:3, 3] = [c.start for c in crop]
    return np.ascontiguousarray(data), img.affine @ shift


def thick_slices(hr: np.ndarray, affine: np.ndarray, axis: int, factor: int):
    """``hr`` seen through slices ``factor`` times thicker along ``axis`` (Gaussian profile,
    FWHM = spacing) and the low-resolution affine (project geometry rule)."""
    import torch

    from metasrgan.degradations.profile import slice_profile_resample
    from metasrgan.volume import scaled_affine

    n = hr.shape[axis]
    if n % factor:
        raise ValueError(f"the crop has {n} voxels along axis {axis}, not a multiple of {factor}")
    moved = torch.from_numpy(np.moveaxis(hr, axis, -2).astype(np.float64))
    lr = slice_profile_resample(moved, n // factor, "gaussian", float(factor)).numpy()
    factors = tuple(1.0 / factor if a == axis else 1.0 for a in range(3))
    return np.moveaxis(lr, -2, axis).astype(np.float32), scaled_affine(affine, factors)


def save_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, path)


# ---------------------------------------------------------------------------- methods
def run_bspline(lr: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Cubic B-spline along ``axis`` only (the other axes are already fine)."""
    import torch

    from metasrgan.interpolation import bspline

    moved = np.moveaxis(lr, axis, -2)  # [..., m, W]
    lead = moved.shape[:-2]
    x = torch.from_numpy(np.ascontiguousarray(moved).reshape(-1, 1, *moved.shape[-2:]))
    y = bspline(x.double(), (n, moved.shape[-1])).float().numpy()
    return np.moveaxis(y.reshape(*lead, n, moved.shape[-1]), -2, axis)


def run_metasrgan(model, lr: np.ndarray, lr_affine: np.ndarray, spacing, acquisition: str,
                  adapt: int = 0):  # fmt: skip
    import nibabel as nib

    from metasrgan.api import upscale

    out = upscale(nib.Nifti1Image(lr, lr_affine), spacing=spacing, model=model,
                  acquisition=acquisition, adapt=adapt)  # fmt: skip
    return np.asarray(out.dataobj, dtype=np.float32), out.affine


def run_eclare(args, lr_path: Path, factor: int) -> tuple[Path, float, str]:
    """ECLARE's CLI on ``lr_path``; returns its output, wall seconds and a note."""
    out_dir = lr_path.parent / f"eclare_p{args.eclare_patches}_b{args.eclare_batch}"
    out = out_dir / lr_path.name.replace(".nii", "_eclare.nii")
    record = out.with_suffix("").with_suffix(".json")
    if out.is_file() and record.is_file() and not args.rerun_eclare:
        info = json.loads(record.read_text())
        return out, float(info["seconds"]), "cached run"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = [
        str(args.eclare_python), "-c", ECLARE_MAIN,
        "--in-fpath", str(lr_path), "--out-dir", str(out_dir),
        "--n-patches", str(args.eclare_patches), "--batch-size", str(args.eclare_batch),
        "--relative-slice-thickness", str(float(factor)),
        "--relative-slice-profile-type", "gaussian", "--gpu-id", str(args.eclare_gpu),
    ]  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"x{factor}.log"  # ECLARE's own progress, written as it runs
    print(f"x{factor} ECLARE running (log: {log})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with log.open("w") as fh:
        code = subprocess.call(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    text = log.read_text()
    if code != 0 or not out.is_file():
        raise RuntimeError(f"ECLARE failed (exit {code}), see {log}:\n{text[-2000:]}")
    found = re.search(r"ECLARE elapsed time: ([0-9.]+)s", text)
    inner = float(found.group(1)) if found else None
    record.write_text(json.dumps({"seconds": seconds, "eclare_seconds": inner, "cmd": cmd[3:]}))
    return out, seconds, ""


# ---------------------------------------------------------------------------- scores
def score(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray, top: float, axis: int):
    """(PSNR, SSIM) inside ``mask`` after dividing by ``top`` and clipping to [0, 1]."""
    from metasrgan.metrics import SSIM_RADIUS, ssim_map

    if sr.shape != hr.shape:
        raise ValueError(f"output shape {sr.shape} differs from the reference's {hr.shape}")
    a = np.clip(sr / top, 0.0, 1.0).astype(np.float64)
    b = np.clip(hr / top, 0.0, 1.0).astype(np.float64)
    mse = float(np.mean((a - b)[mask] ** 2))
    psnr = float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
    along = next(x for x in range(3) if x != axis)  # slices that contain the thick axis
    r = SSIM_RADIUS
    values = []
    for i in range(hr.shape[along]):
        sa, sb, sm = (np.take(v, i, axis=along) for v in (a, b, mask))
        inside = sm[r:-r, r:-r]
        if inside.any():
            values.append(ssim_map(sa, sb, 1.0)[r:-r, r:-r][inside])
    return psnr, float(np.concatenate(values).mean())


# ---------------------------------------------------------------------------- report
def markdown(rows: list[Row]) -> str:
    by = {(r.factor, r.method): r for r in rows}
    adapted = sorted({r.method for r in rows if r.method.startswith("metasrgan --adapt")})
    methods = [m for m in ("B-spline", "metasrgan", *adapted, "ECLARE")
               if any(r.method == m for r in rows)]  # fmt: skip
    head = "| factor | " + " | ".join(f"{m} PSNR / SSIM" for m in methods)
    head += " | metasrgan - B-spline | metasrgan - ECLARE | seconds (" + ", ".join(methods) + ") |"
    lines = [head, "|" + "---|" * (len(methods) + 4)]
    for f in sorted({r.factor for r in rows}):
        cells = [f"x{f}"]
        for m in methods:
            r = by.get((f, m))
            cells.append(f"{r.psnr:.2f} / {r.ssim:.4f}" if r else "-")
        for other in ("B-spline", "ECLARE"):
            a, b = by.get((f, "metasrgan")), by.get((f, other))
            cells.append(f"{a.psnr - b.psnr:+.2f} dB / {a.ssim - b.ssim:+.4f}" if a and b else "-")
        cells.append(", ".join(f"{by[(f, m)].seconds:.1f}" if (f, m) in by else "-"
                               for m in methods))  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--volume", type=Path, default=INIA19, help="reference volume (NIfTI)")
    p.add_argument(
        "--crop",
        type=parse_crop,
        default=parse_crop(DEFAULT_CROP),
        help=f"voxel crop a:b,c:d,e:f of the reference (default {DEFAULT_CROP})",
    )
    p.add_argument("--axis", type=int, default=2, help="voxel axis made thick (default 2)")
    p.add_argument("--factors", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    p.add_argument("--model", default="shipped", help="metasrgan model file or 'shipped'")
    p.add_argument("--acquisition", default="auto", help="metasrgan --acquisition (auto)")
    p.add_argument(
        "--adapt",
        type=int,
        nargs="*",
        default=[],
        help="also rows of metasrgan adapted to each LR volume for these updates",
    )
    p.add_argument(
        "--eclare-python",
        type=Path,
        default=None,
        help="python of a venv with `pip install eclare` (absent: ECLARE skipped)",
    )
    p.add_argument(
        "--eclare-factors",
        type=int,
        nargs="+",
        default=None,
        help="factors ECLARE runs at (default: all --factors)",
    )
    p.add_argument(
        "--eclare-patches",
        type=int,
        default=2000,
        help="ECLARE training patches (its default: 1,000,000)",
    )
    p.add_argument("--eclare-batch", type=int, default=8, help="ECLARE batch (its default 128)")
    p.add_argument("--eclare-gpu", type=int, default=-1, help="ECLARE --gpu-id (-1: CPU)")
    p.add_argument("--rerun-eclare", action="store_true", help="ignore cached ECLARE outputs")
    p.add_argument("--threads", type=int, default=1, help="torch threads, all methods")
    p.add_argument("--work", type=Path, default=Path("/tmp/metasrgan-bench-through-plane"))
    p.add_argument("--csv", type=Path, default=None, help="also write the rows as CSV")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from metasrgan.api import load_model
    from metasrgan.volume import spacing_of

    torch.set_num_threads(args.threads)
    hr, affine = load_reference(args.volume, args.crop)
    mask = hr > 0
    top = float(np.percentile(hr[mask], 99.5))
    spacing = spacing_of(affine)
    model = load_model(None if args.model == "shipped" else args.model, device="cpu")
    eclare_ok = args.eclare_python is not None and Path(args.eclare_python).is_file()
    notes = []
    if not eclare_ok:
        notes.append(f"ECLARE skipped: no interpreter at --eclare-python {args.eclare_python}")
    eclare_factors = set(args.eclare_factors or args.factors)
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for f in args.factors:
        lr, lr_affine = thick_slices(hr, affine, args.axis, f)
        lr_path = args.work / f"crop_thick_x{f}.nii.gz"
        save_nifti(lr, lr_affine, lr_path)
        start = time.perf_counter()
        out = run_bspline(lr, args.axis, hr.shape[args.axis])
        rows.append(Row(f, "B-spline", *score(out, hr, mask, top, args.axis),
                        time.perf_counter() - start))  # fmt: skip
        start = time.perf_counter()
        out, out_affine = run_metasrgan(model, lr, lr_affine, spacing, args.acquisition)
        seconds = time.perf_counter() - start
        if not np.allclose(out_affine, affine, atol=1e-4):
            raise RuntimeError(f"metasrgan's output does not overlay the reference at x{f}")
        rows.append(Row(f, "metasrgan", *score(out, hr, mask, top, args.axis), seconds))
        for steps in args.adapt:
            start = time.perf_counter()
            out, _ = run_metasrgan(model, lr, lr_affine, spacing, args.acquisition, steps)
            rows.append(Row(f, f"metasrgan --adapt {steps}", *score(out, hr, mask, top, args.axis),
                            time.perf_counter() - start))  # fmt: skip
        if eclare_ok and f in eclare_factors:
            import nibabel as nib

            path, seconds, note = run_eclare(args, lr_path, f)
            img = nib.load(path)
            if not np.allclose(img.affine, affine, atol=1e-3):
                note = (note + "; " if note else "") + "affine differs from the reference's"
            out = np.asarray(img.dataobj, dtype=np.float32)
            rows.append(Row(f, "ECLARE", *score(out, hr, mask, top, args.axis), seconds, note))
        for r in rows:
            if r.factor == f:
                print(f"x{f} {r.method:10s} PSNR {r.psnr:6.2f}  SSIM {r.ssim:.4f}  "
                      f"{r.seconds:7.1f} s {r.note}", file=sys.stderr, flush=True)  # fmt: skip
    table = markdown(rows)
    crop = ",".join(f"{c.start}:{c.stop}" for c in args.crop)
    settings = (
        f"reference: {args.volume.name} crop {crop} ({' x '.join(map(str, hr.shape))} voxels, "
        f"{spacing[0]:g} mm), thick axis {args.axis}, Gaussian profile FWHM = spacing; "
        f"metasrgan model: {args.model}; torch threads {args.threads}"
        + (
            f"; ECLARE {args.eclare_patches} patches, batch {args.eclare_batch}"
            if eclare_ok
            else ""
        )
    )
    print("\n".join([settings, *notes, "", table]))
    if args.markdown:
        args.markdown.write_text("\n".join([settings, *notes, "", table, ""]))
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["factor", "method", "psnr_db", "ssim", "seconds", "note"])
            for r in rows:
                w.writerow([r.factor, r.method, f"{r.psnr:.4f}", f"{r.ssim:.5f}",
                            f"{r.seconds:.2f}", r.note])  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
