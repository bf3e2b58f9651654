"""Meta-Upscale fast path vs the per-pixel reference; whole generator vs its feature extractor.

Run: ``python -m benchmarks.bench_upscale [--threads 2] [--repeats 3] [--parts 1 2 3 4]
[--scales 1.1 2 3.7] [--quick] [--json FILE]``.

1. The upscaler alone on 240x240 LR features (64 channels, batch 1), every scale 1.1..4.0:
   fast path (``MetaUpscale.forward``) vs ``forward_reference`` (Meta-SR's per-pixel
   formulation).  Time: median of ``--repeats`` calls, the two alternating.  Peak memory:
   each implementation runs once in a fresh subprocess; its peak resident memory (Linux
   ``VmHWM``, reset through ``/proc/self/clear_refs`` after setup) minus the resident memory
   just before the call, i.e. everything the call allocates, torch's buffers included.
2. The whole generator (paper configuration, eval, no grad) vs its feature extractor alone
   (the same network without the upscaler), every scale, on a 240x240 MRI slice.
3. A 240x240x155 volume at x2 in-plane through :func:`metasrgan.volume.upscale_volume`:
   seconds, and the ratio to the feature extractor alone over the same 155 slices.
4. The fast path's two exact implementations forced on every scale (row-offset
   convolutions, offset groups), 240x240x64 features: the measurement behind
   ``ROW_PHASE_MAX_WORK``, with the work measure ``q_w * s_h * s_w`` it compares.

Targets (issue #7): (1) >= 30x at x2, >= 3x at every scale, memory <= 1/5; (2) <= 1.3x;
(3) <= 60 s on 2 CPU threads.  The machine is shared: absolute numbers are noisy, ratios
come from interleaved measurements in the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from metasrgan.scale import TRAINED_SCALES

QUICK_SCALES = (1.1, 2.0, 2.3, 3.7, 4.0)


# ---------------------------------------------------------------------------- measuring
def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall seconds of each function (and ``<name>_cpu``: median CPU seconds of this
    process, less sensitive to other processes), calls alternating so load hits all."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    out = {name: statistics.median(ts) for name, ts in times.items()}
    out.update({f"{name}_cpu": statistics.median(ts) for name, ts in cpu.items()})
    return out


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_probe(impl: str, scale: float, threads: int) -> dict:
    """In this (fresh) process: extra peak resident memory of one upscaler call, in MiB."""
    from metasrgan.models.meta_upscale import MetaUpscale

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module = MetaUpscale(64, 1, 3)
    x = torch.randn(1, 64, 240, 240)
    fn = module if impl == "fast" else module.forward_reference
    with torch.no_grad():
        fn(torch.randn(1, 64, 8, 8), scale)  # load kernels and libraries before measuring
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
        reset = True
    except OSError:
        reset = False
    before = _status_kb("VmRSS")
    with torch.no_grad():
        y = fn(x, scale)
    peak = _status_kb("VmHWM")
    return {
        "peak_mib": (peak - before) / 1024,
        "output_mib": y.numel() * y.element_size() / 2**20,
        "reset": reset,
    }


def measure_memory(impl: str, scale: float, threads: int) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_upscale", "--memory-probe", impl, str(scale),
         "--threads", str(threads)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["reset"]:
        print("  (warning: could not reset the peak; memory figures include setup)")
    return result["peak_mib"]


# ---------------------------------------------------------------------------- inputs
def mri_slice(size: int = 240) -> torch.Tensor:
    """A real axial T1 slice (bundled MNI152 slab) zero-padded to ``size`` x ``size``, [0, 1]."""
    from importlib import resources

    import nibabel as nib

    path = resources.files("metasrgan") / "samples" / "mni152_val.nii.gz"
    data = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    image = data[:size, :size, data.shape[2] // 2]
    image = image / np.percentile(image, 99.5)
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - image.shape[0]) // 2, (size - image.shape[1]) // 2
    out[top : top + image.shape[0], left : left + image.shape[1]] = np.clip(image, 0, 1)
    return torch.from_numpy(out)[None, None]


def paper_model():
    from metasrgan.registry import make

    torch.manual_seed(0)
    return make({"name": "meta-srgan"}).eval()


# ---------------------------------------------------------------------------- parts
def part_upscaler(scales, repeats: int, threads: int, memory: bool) -> list[dict]:
    from metasrgan.models.meta_upscale import MetaUpscale

    torch.manual_seed(0)
    module = MetaUpscale(64, 1, 3)
    x = torch.randn(1, 64, 240, 240)
    rows = []
    print("\n1. Meta-Upscale alone, 240x240x64 features, batch 1 (fast vs per-pixel reference)")
    print("| scale | fast ms | reference ms | speed-up | CPU-time speed-up | fast MiB "
          "| reference MiB | memory |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    with torch.no_grad():
        for s in scales:
            module(x, s), module.forward_reference(x[..., :16, :16], s)  # warm-up
            t = interleaved(
                {
                    "fast": lambda s=s: module(x, s),
                    "ref": lambda s=s: module.forward_reference(x, s),
                },
                repeats,
            )
            row = {
                "scale": s,
                "fast_s": t["fast"],
                "ref_s": t["ref"],
                "speedup": t["ref"] / t["fast"],
                "cpu_speedup": t["ref_cpu"] / t["fast_cpu"],
            }
            if memory:
                row["fast_mib"] = measure_memory("fast", s, threads)
                row["ref_mib"] = measure_memory("reference", s, threads)
                row["memory_ratio"] = row["fast_mib"] / row["ref_mib"]
                fast_mib, ref_mib = row["fast_mib"], row["ref_mib"]
                mem = f"{fast_mib:.0f} | {ref_mib:.0f} | 1/{ref_mib / fast_mib:.0f}"
            else:
                mem = "- | - | -"
            speed = f"{row['speedup']:.1f}x | {row['cpu_speedup']:.1f}x"
            print(f"| {s:g} | {t['fast'] * 1e3:.0f} | {t['ref'] * 1e3:.0f} | {speed} | {mem} |",
                  flush=True)  # fmt: skip
            rows.append(row)
    return rows


def part_generator(scales, repeats: int) -> list[dict]:
    model = paper_model()
    x = mri_slice()
    rows = []
    print("\n2. Whole generator vs its feature extractor alone, 240x240 MRI slice, batch 1")
    print("| scale | generator ms | features ms | ratio | CPU-time ratio |")
    print("|---|---|---|---|---|")

    def features():
        return model.features(model.normalization.encode(x))

    with torch.no_grad():
        features()
        for s in scales:
            model(x[..., :32, :32], s)  # warm
            t = interleaved({"gen": lambda s=s: model(x, s), "fe": features}, repeats)
            row = {"scale": s, "gen_s": t["gen"], "fe_s": t["fe"], "ratio": t["gen"] / t["fe"]}
            row["cpu_ratio"] = t["gen_cpu"] / t["fe_cpu"]
            print(f"| {s:g} | {t['gen'] * 1e3:.0f} | {t['fe'] * 1e3:.0f} | {row['ratio']:.3f} "
                  f"| {row['cpu_ratio']:.3f} |", flush=True)  # fmt: skip
            rows.append(row)
    return rows


def part_volume(depth: int, channels_last: bool) -> dict:
    from metasrgan.volume import plan_volume, upscale_volume

    model = paper_model()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # a BraTS-sized volume: the real slice repeated with a drift, 1 mm voxels
    base = mri_slice()[0, 0].numpy()
    volume = np.stack([np.roll(base, k % 7, axis=0) for k in range(depth)], axis=-1) * 800.0
    affine = np.eye(4)
    plan = plan_volume(volume.shape, affine, scale=2.0, axes=(0, 1))
    print(f"\n3. A 240x240x{depth} volume at x2 in-plane (channels-last: {channels_last})")
    start, start_cpu = time.perf_counter(), time.process_time()
    out, _ = upscale_volume(model, volume, affine, plan, batch=1, progress=False)
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    assert out.shape == (480, 480, depth)
    slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, -1, 0) / 800.0))[:, None]
    start, start_cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for k in range(depth):
            xk = slices[k : k + 1].float()
            model.features(model.normalization.encode(xk))
    fe, fe_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    print("| volume s | features alone s | ratio | volume CPU s | features CPU s | target |")
    print("|---|---|---|---|---|---|")
    print(f"| {total:.1f} | {fe:.1f} | {total / fe:.2f} | {total_cpu:.1f} | {fe_cpu:.1f} "
          "| <= 60 s for 155 slices |", flush=True)  # fmt: skip
    return {"depth": depth, "volume_s": total, "fe_s": fe, "ratio": total / fe,
            "volume_cpu_s": total_cpu, "fe_cpu_s": fe_cpu}  # fmt: skip


def part_paths(scales, repeats: int) -> list[dict]:
    from metasrgan.models.meta_upscale import ROW_PHASE_MAX_WORK, MetaUpscale
    from metasrgan.scale import Scale2d

    module = MetaUpscale(64, 1, 3).eval()
    x = torch.randn(1, 64, 240, 240, generator=torch.Generator().manual_seed(0))
    rows = []
    print(f"{'scale':>6} {'work':>5} {'rows ms':>8} {'offsets ms':>10}  chosen")
    with torch.no_grad():
        for scale in scales:
            s = Scale2d.of(scale)
            out = s.out_shape(240, 240)
            t = interleaved(
                {
                    "rows": lambda s=s, out=out: module._forward_row_phases(x, s, out),
                    "offsets": lambda s=s, out=out: module._forward_offset_batched(x, s, out),
                },
                repeats,
            )
            work = s.w.q * s.h.value * s.w.value
            chosen = "rows" if work <= ROW_PHASE_MAX_WORK else "offsets"
            rows.append({"scale": scale, "work": work, **t, "chosen": chosen})
            print(f"{scale:>6} {work:>5.0f} {t['rows'] * 1e3:>8.1f} {t['offsets'] * 1e3:>10.1f}"
                  f"  {chosen}")  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--scales", type=float, nargs="+", help="default: 1.1, 1.2, ..., 4.0")
    parser.add_argument("--quick", action="store_true", help=f"scales {QUICK_SCALES}, 1 repeat")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--depth", type=int, default=155, help="slices of the volume")
    parser.add_argument("--nchw", action="store_true", help="volume without channels-last")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--memory-probe", nargs=2, metavar=("IMPL", "SCALE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.memory_probe:
        impl, scale = args.memory_probe
        print(json.dumps(memory_probe(impl, float(scale), args.threads)))
        return 0
    torch.set_num_threads(args.threads)
    default_scales = QUICK_SCALES if args.quick else TRAINED_SCALES
    scales = args.scales or list(default_scales)
    repeats = 1 if args.quick else args.repeats
    print(
        f"torch {torch.__version__}, {args.threads} threads, CPU; median of {repeats} "
        "interleaved repeats (shared machine: absolute times are noisy, ratios are not)"
    )
    results: dict = {"threads": args.threads, "repeats": repeats}
    if 1 in args.parts:
        results["upscaler"] = part_upscaler(scales, repeats, args.threads, not args.no_memory)
        r = results["upscaler"]
        print(f"min speed-up {min(x['speedup'] for x in r):.1f}x (target >= 3x); "
              + (f"largest memory ratio 1/{1 / max(x['memory_ratio'] for x in r):.1f} "
                 "(target <= 1/5)" if "memory_ratio" in r[0] else ""))  # fmt: skip
    if 2 in args.parts:
        results["generator"] = part_generator(scales, repeats)
        print(f"largest ratio {max(x['ratio'] for x in results['generator']):.3f} (target <= 1.3)")
    if 3 in args.parts:
        results["volume"] = part_volume(args.depth if not args.quick else 20, not args.nchw)
    if 4 in args.parts:
        results["paths"] = part_paths(scales, repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
