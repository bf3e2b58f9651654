"""Whole volumes: background skipping, through-plane upscaling, batch size and peak memory.

Run: ``python -m benchmarks.bench_volume [--threads 2] [--depth 155] [--parts 1 2 3 4]
[--quick] [--allocator keep|default] [--json FILE]``.

The volume is BraTS-like: the skull-stripped Colin27 T1 (``ch2bet.nii.gz`` of Debian's
``mricron-data``; without it, the bundled Colin27 slab masked to its brain and repeated)
centred in a 240x240 frame, 155 axial slices through the brain, 1 mm, zero background.
The model has the shipped recipe's layout (``configs/shipped.yaml``: acquisition-conditioned,
sinc skip for k-space, no batch norm), channels-last, CPU.

1. x2 in-plane, dense (``skip_background=False``) against background skipping, on the
   skull-stripped volume and on the same volume with Rician noise everywhere (no constant
   background: skipping must fall back to dense and cost no more); outputs compared.
2. Through-plane: the volume made 1x1x5 mm (5-slice box average, 31 slices) upscaled to
   1 mm (``--spacing 1``: x5 on the slice axis, (5, 1) scales on sagittal slices) against
   x2 in-plane; seconds per output voxel, both dense.
3. Peak resident memory of a whole-volume x2 run (default settings: batch sized from the
   available memory, background skipping) in a fresh process.
4. Self-calibration's cost: the shipped model file with ``self_calibrate`` on and off, x2
   in-plane (k-space) and x5 through-plane (thick), background skipping on (the default).

Every time is also a ratio to the convolution roofline measured in the same run
(:mod:`benchmarks.roofline`): against the run's first reading, the readings just before and
after each pass, and readings beside every batch of slices
(:class:`~benchmarks.roofline.LimitBeside`, their own time taken out of the pass), which
follow the shared machine's speed through the pass.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.roofline import (
    LimitBeside,
    add_allocator_argument,
    conv_rate,
    count_flops,
    ratio,
    use_allocator,
)

CH2BET = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
SHIPPED_ARGS = {
    "skip": "acquisition",
    "norm": "none",
    "acquisitions": ["kspace", "thick", "bicubic"],
    "default_acquisition": "kspace",
}


def brats_like(depth: int = 155, side: int = 240) -> np.ndarray:
    """A skull-stripped volume in BraTS's frame (see the module docstring)."""
    import nibabel as nib

    if CH2BET.is_file():
        data = np.asarray(nib.load(str(CH2BET)).dataobj, dtype=np.float32)
    else:
        from scipy import ndimage

        from metasrgan.samples_path import sample_path

        slab = np.asarray(nib.load(str(sample_path("colin27_val"))).dataobj, dtype=np.float32)
        brain = ndimage.binary_opening(slab > np.percentile(slab[slab > 0], 40), iterations=4)
        data = np.tile(np.where(brain, slab, 0), (1, 1, -(-depth // slab.shape[2])))
    z = np.nonzero(data.any(axis=(0, 1)))[0]
    mid = (z[0] + z[-1]) // 2
    data = data[:side, :side, max(0, mid - depth // 2) : max(0, mid - depth // 2) + depth]
    out = np.zeros((side, side, depth), dtype=np.float32)
    top, left = (side - data.shape[0]) // 2, (side - data.shape[1]) // 2
    out[top : top + data.shape[0], left : left + data.shape[1], : data.shape[2]] = data
    return out


def shipped_layout_model() -> torch.nn.Module:
    from metasrgan.registry import make

    torch.manual_seed(0)
    model = make({"name": "meta-srgan", "args": SHIPPED_ARGS}).eval()
    last = model.upscale.weight_prediction.body[-1]
    with torch.no_grad():  # a non-zero residual, as a trained model has
        last.weight.normal_(0, 0.02)
    return model.to(memory_format=torch.channels_last)


def run_volume(model, volume, affine, skip: bool, **plan) -> tuple[np.ndarray, float, float]:
    from metasrgan.volume import plan_volume, upscale_volume

    p = plan_volume(volume.shape, affine, **plan)
    start, cpu = time.perf_counter(), time.process_time()
    out, _ = upscale_volume(model, volume, affine, p, progress=False, skip_background=skip)
    return out, time.perf_counter() - start, time.process_time() - cpu


def volume_flops(model, volume: np.ndarray, skip: bool, every: int = 1) -> float:
    """FLOPs of the x2 in-plane pass over ``volume`` (axial slices), counted on every
    ``every``-th slice and scaled up to all of them."""
    from metasrgan.background import BackgroundSkip
    from metasrgan.intensity import IntensityMap

    unit = IntensityMap.fit(volume).apply(volume, clip=False)
    picked = range(0, volume.shape[2], every)
    bg = BackgroundSkip(model, 2.0, "kspace")

    def run():
        with torch.no_grad():
            for k in picked:
                x = torch.from_numpy(np.ascontiguousarray(unit[:, :, k]))[None, None]
                if not skip or bg(x) is None:
                    model(x, 2.0, acquisition="kspace")

    return count_flops(run) * volume.shape[2] / len(picked)


def measured_pass(model, volume, skip: bool, affine=None, **plan) -> dict:
    """One pass (x2 in-plane unless ``plan`` says otherwise) with the limit read around it
    (before, after: best of 7) and beside each batch of slices
    (:class:`~benchmarks.roofline.LimitBeside`, its time taken out)."""
    affine = np.eye(4) if affine is None else affine
    before = conv_rate()["gflops_best"]
    with LimitBeside() as beside:
        out, seconds, cpu = run_volume(model, volume, affine, skip, **(plan or {"scale": 2.0}))
    after = conv_rate()["gflops_best"]
    return {"out": out, "s": seconds - beside.spent, "cpu_s": cpu - beside.spent_cpu,
            "around": (before, after), "beside": beside.rate,
            "beside_range": (min(beside.rates), max(beside.rates))}  # fmt: skip


def noisy_like(volume: np.ndarray) -> np.ndarray:
    """``volume`` with Rician noise (3% of its maximum) everywhere: no constant background."""
    rng = np.random.default_rng(0)
    sigma = 0.03 * float(volume.max())
    return np.hypot(volume + rng.normal(0, sigma, volume.shape),
                    rng.normal(0, sigma, volume.shape)).astype(np.float32)  # fmt: skip


def part_background(model, depth: int, rate: float) -> dict:
    stripped = brats_like(depth)
    noisy = noisy_like(stripped)
    rows = {}
    for skip in (False, True):  # oneDNN builds its kernels on first use: not in a pass
        run_volume(model, stripped[:, :, depth // 2 - 1 : depth // 2 + 1], np.eye(4), skip,
                   scale=2.0)  # fmt: skip
    print(f"\n1. {stripped.shape} at x2 in-plane: dense vs background skipping")
    print("| volume | dense s | skipping s | speed-up (CPU; at equal limit) | max abs diff / max "
          "| dense ratio: first reading, around, beside (GFLOP/s beside: mean, range) "
          "| skipping ratio (executed FLOPs): the same |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, vol in (("skull-stripped", stripped), ("noisy background", noisy)):
        dense, fast = measured_pass(model, vol, False), measured_pass(model, vol, True)
        diff = float(np.abs(dense["out"] - fast["out"]).max() / np.abs(dense["out"]).max())
        every = max(1, depth // 10)
        row = {"rel_diff": diff, "out_voxels": int(dense["out"].size)}
        for key, run, skip in (("dense", dense, False), ("skip", fast, True)):
            flops = volume_flops(model, vol, skip, every)
            row |= {f"{key}_s": run["s"], f"{key}_cpu_s": run["cpu_s"],
                    f"{key}_gflop": flops / 1e9, f"{key}_limits": run["around"],
                    f"{key}_limit_beside": run["beside"],
                    f"{key}_limit_beside_range": run["beside_range"],
                    f"{key}_ratio": ratio(run["s"], flops, rate),
                    f"{key}_ratio_around": ratio(run["s"], flops, sum(run["around"]) / 2),
                    f"{key}_ratio_beside": ratio(run["s"], flops, run["beside"])}  # fmt: skip
        row["speedup"] = dense["s"] / fast["s"]
        row["cpu_speedup"] = dense["cpu_s"] / fast["cpu_s"]
        # each pass's time at the same machine speed (the limit beside its slices)
        row["speedup_equal_limit"] = row["speedup"] * dense["beside"] / fast["beside"]
        rows[name] = row

        print(f"| {name} | {row['dense_s']:.1f} | {row['skip_s']:.1f} | {row['speedup']:.2f}x "
              f"({row['cpu_speedup']:.2f}x; {row['speedup_equal_limit']:.2f}x) | {diff:.1e} "
              f"| {_ratios(row, 'dense')} | {_ratios(row, 'skip')} "
              f"({row['skip_gflop'] / row['dense_gflop']:.0%} of dense) |", flush=True)  # fmt: skip
    return rows


def _ratios(row: dict, key: str) -> str:
    lo, hi = row[f"{key}_limit_beside_range"]
    return (f"{row[f'{key}_ratio']:.2f}, {row[f'{key}_ratio_around']:.2f}, "
            f"**{row[f'{key}_ratio_beside']:.2f}** ({row[f'{key}_limit_beside']:.0f}, "
            f"{lo:.0f}-{hi:.0f})")  # fmt: skip


def part_through_plane(model, depth: int, in_plane: dict | None = None) -> dict:
    """``in_plane``: part 1's dense x2 pass on the noisy volume, when it ran (else run here).
    Both passes read the limit beside their slices: the per-voxel ratio is also given at
    equal limit (each pass's time times its own limit)."""
    noisy = noisy_like(brats_like(depth))
    n = depth // 5
    thick = noisy[:, :, : 5 * n].reshape(*noisy.shape[:2], n, 5).mean(axis=-1)
    if in_plane is None:
        run = measured_pass(model, noisy, False)
        in_plane = {"s": run["s"], "voxels": run["out"].size, "beside": run["beside"]}
    t_in, n_in = in_plane["s"], in_plane["voxels"]
    through = measured_pass(model, thick, False, np.diag([1.0, 1.0, 5.0, 1.0]), spacing=1.0)
    t_th, n_th = through["s"], through["out"].size
    per_in, per_th = t_in / n_in, t_th / n_th
    equal = per_th * through["beside"] / (per_in * in_plane["beside"])
    print(f"\n2. Through-plane x5 ({thick.shape} at 1x1x5 mm -> {through['out'].shape}) vs "
          f"in-plane x2 ({noisy.shape}), dense, noisy background")  # fmt: skip
    print("| pass | seconds | output voxels | ns per output voxel | limit beside (GFLOP/s) |")
    print("|---|---|---|---|---|")
    print(f"| in-plane x2 | {t_in:.1f} | {n_in:,} | {per_in * 1e9:.0f} "
          f"| {in_plane['beside']:.0f} |")  # fmt: skip
    print(f"| through-plane x5 | {t_th:.1f} | {n_th:,} | {per_th * 1e9:.0f} "
          f"| {through['beside']:.0f} |")  # fmt: skip
    print(f"ratio through/in-plane per output voxel: {per_th / per_in:.2f}, at equal limit "
          f"{equal:.2f} (target <= 1.2)")  # fmt: skip
    return {"in_plane_s": t_in, "through_s": t_th, "in_plane_voxels": n_in,
            "through_voxels": n_th, "ratio_per_voxel": per_th / per_in,
            "in_plane_limit_beside": in_plane["beside"], "through_limit_beside": through["beside"],
            "ratio_per_voxel_equal_limit": equal}  # fmt: skip


def memory_probe(depth: int) -> dict:
    """In this (fresh) process: a whole-volume x2 run with default settings."""
    import resource

    from metasrgan.volume import plan_volume, slice_batch, upscale_volume

    model = shipped_layout_model()
    volume = brats_like(depth)
    plan = plan_volume(volume.shape, np.eye(4), scale=2.0)
    start = time.perf_counter()
    out, _ = upscale_volume(model, volume, np.eye(4), plan, progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    return {"peak_rss_mib": peak, "seconds": seconds, "output_mib": out.nbytes / 2**20,
            "batch": slice_batch(model, (240, 240), (480, 480))}  # fmt: skip


def part_memory(depth: int, threads: int, allocator: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_volume", "--memory-probe", str(depth),
         "--threads", str(threads), "--allocator", allocator],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n3. Whole-volume 240x240x{depth} at x2, default settings, fresh process: peak RSS "
          f"{result['peak_rss_mib']:.0f} MiB (target < 2048), batch {result['batch']} "
          f"(from the available memory), {result['seconds']:.1f} s, output "
          f"{result['output_mib']:.0f} MiB", flush=True)  # fmt: skip
    return result


def part_calibration(depth: int) -> dict:
    """The shipped weights with and without self-calibration (one gain per volume pass)."""
    from metasrgan.checkpoint import load_model
    from metasrgan.inference import shipped_model_path
    from metasrgan.registry import with_args

    trained = load_model(shipped_model_path()).eval()
    volume = brats_like(depth)
    n = depth // 5
    thick = volume[:, :, : 5 * n].reshape(*volume.shape[:2], n, 5).mean(axis=-1)
    cases = {
        "in-plane x2": (volume, np.eye(4), {"scale": 2.0}),
        "through-plane x5": (thick, np.diag([1.0, 1.0, 5.0, 1.0]), {"spacing": 1.0}),
    }
    print("\n4. Self-calibration's cost (shipped weights, background skipping on)")
    print("| pass | calibrated s | as trained s | ratio |")
    print("|---|---|---|---|")
    out = {}
    for name, (vol, affine, plan) in cases.items():
        seconds = {}
        for on in (True, False):
            model = with_args(trained, self_calibrate=on).to(memory_format=torch.channels_last)
            seconds[on] = run_volume(model, vol, affine, True, **plan)[1]
        ratio = seconds[True] / seconds[False]
        print(f"| {name} | {seconds[True]:.1f} | {seconds[False]:.1f} | {ratio:.3f} |", flush=True)
        out[name] = {"calibrated_s": seconds[True], "as_trained_s": seconds[False], "ratio": ratio}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--depth", type=int, default=155)
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--quick", action="store_true", help="depth 20")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)
    add_allocator_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    allocator = use_allocator(args.allocator)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe)))
        return 0
    depth = 20 if args.quick else args.depth
    model = shipped_layout_model()
    before = conv_rate()
    print(f"torch {torch.__version__}, {args.threads} threads, CPU; roofline: 64->64 3x3 conv "
          f"on 240x240, {before['gflops_best']:.1f} GFLOP/s (best of 7; median "
          f"{before['gflops_median']:.1f})")  # fmt: skip
    rate = before["gflops_best"]
    results: dict = {"threads": args.threads, "depth": depth, "roofline_before": before,
                     "allocator": allocator}  # fmt: skip
    if 1 in args.parts:
        results["background"] = part_background(model, depth, rate)
    if 2 in args.parts:
        noisy = results.get("background", {}).get("noisy background")
        reuse = noisy and {"s": noisy["dense_s"], "voxels": noisy["out_voxels"],
                           "beside": noisy["dense_limit_beside"]}  # fmt: skip
        results["through_plane"] = part_through_plane(model, depth, reuse)
    if 3 in args.parts:
        results["memory"] = part_memory(depth, args.threads, args.allocator)
    if 4 in args.parts:
        results["calibration"] = part_calibration(depth)
    results["roofline_after"] = conv_rate()
    print(f"roofline after: {results['roofline_after']['gflops_best']:.1f} GFLOP/s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
