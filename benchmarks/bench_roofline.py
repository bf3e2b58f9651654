"""Generator, upscaler and training step against the convolution roofline; FLOPs per pixel.

Run: ``python -m benchmarks.bench_roofline [--threads 2] [--repeats 3] [--parts 1 2 3 4]
[--train-steps 6] [--allocator keep|default] [--json FILE]``.

1. FLOPs per pixel of every network (counted on the operations the code runs:
   ``torch.utils.flop_counter``; 2 FLOPs per multiply-add).
2. The generator (the shipped recipe's layout, eval, channels-last) and its feature
   extractor on a real 240x240 MRI slice, and the Meta-Upscale alone on 240x240x64
   features: seconds, GFLOP and the ratio to the roofline.
3. The shipped recipe's training step (``configs/shipped.yaml``: L1 only, no discriminator,
   batch 8, 96x96 HR patches, Adam) at the scales of its three acquisitions: samples/s and
   roofline ratio of forward + backward + update.
4. The whole trainer on ``configs/shipped.yaml`` for ``--train-steps`` updates in a
   temporary folder (data loading, degradations, random scales included): samples/s, and
   the ratio of its time per step to the bare step's (what waiting on data costs).

The roofline is the best rate of one 64->64 3x3 convolution on 240x240
(:mod:`benchmarks.roofline`), measured around every timed call (3 calls before and after
each): on a shared machine the load changes within seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.roofline import (
    add_allocator_argument,
    conv_rate,
    count_flops,
    ratio,
    use_allocator,
)

SHIPPED_ARGS = {
    "skip": "acquisition",
    "norm": "none",
    "acquisitions": ["kspace", "thick", "bicubic"],
    "default_acquisition": "kspace",
}
STEP_CASES = (("kspace", 2.0), ("bicubic", 3.0), ("thick", (4.0, 1.0)))


def median_seconds(fn, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn`` and the roofline (GFLOP/s) measured around each call: the
    machine's load changes within seconds here, so each ratio uses its own limit (the best
    convolution rate of the calls just before and after)."""
    fn()  # warm
    times, rates = [], [conv_rate(repeats=3)["gflops_best"]]
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        rates.append(conv_rate(repeats=3)["gflops_best"])
    return statistics.median(times), max(rates)


def shipped_model(train: bool = False) -> torch.nn.Module:
    from metasrgan.registry import make

    torch.manual_seed(0)
    model = make({"name": "meta-srgan", "args": SHIPPED_ARGS})
    return model.to(memory_format=torch.channels_last).train(train)


def part_flops() -> list[dict]:
    from metasrgan.models.meta_upscale import MetaUpscale
    from metasrgan.registry import make

    side = 96
    x = torch.rand(1, 1, side, side)
    rows = []
    with torch.no_grad():
        for name, args, scale in (
            ("meta-srgan", {}, 2.0),
            ("meta-srgan", {}, 3.7),
            ("srgan", {}, None),
            ("edsr", {}, None),
            ("discriminator", {}, None),
        ):
            net = make({"name": name, "args": args}).eval()
            flops = count_flops(lambda net=net, s=scale: net(x, s) if s else net(x))
            out = side * scale if scale else (2 * side if name != "discriminator" else side)
            rows.append({"network": name + (f" x{scale:g}" if scale else ""),
                         "flops_per_input_pixel": flops / side**2,
                         "flops_per_output_pixel": flops / out**2})  # fmt: skip
        up = MetaUpscale(64, 1, 3)
        feats = torch.rand(1, 64, side, side)
        for s in (2.0, 3.7):
            flops = count_flops(lambda s=s: up(feats, s))
            rows.append({"network": f"Meta-Upscale x{s:g} (ideal 1152/HR px)",
                         "flops_per_input_pixel": flops / side**2,
                         "flops_per_output_pixel": flops / (int(side * s)) ** 2})  # fmt: skip
    print("\n1. FLOPs per pixel (counted; input = LR pixel, output = HR pixel)")
    print("| network | FLOPs per input pixel | FLOPs per output pixel |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['network']} | {r['flops_per_input_pixel']:,.0f} "
              f"| {r['flops_per_output_pixel']:,.0f} |")  # fmt: skip
    return rows


def part_inference(rate: float, repeats: int) -> list[dict]:
    from benchmarks.bench_upscale import mri_slice
    from metasrgan.models.meta_upscale import MetaUpscale

    model = shipped_model()
    x = mri_slice()
    torch.manual_seed(0)
    up = MetaUpscale(64, 1, 3).to(memory_format=torch.channels_last)
    feats = torch.rand(1, 64, 240, 240).contiguous(memory_format=torch.channels_last)
    cases = {
        "feature extractor": lambda: model.extract_features(x),
        "generator x2 (k-space: sinc skip)": lambda: model(x, 2.0, acquisition="kspace"),
        "generator x2 (bicubic skip)": lambda: model(x, 2.0, acquisition="bicubic"),
        "generator x3.7 (bicubic skip)": lambda: model(x, 3.7, acquisition="bicubic"),
        "generator (5, 1) (thick)": lambda: model(x, (5.0, 1.0), acquisition="thick"),
        "Meta-Upscale x2": lambda: up(feats, 2.0),
        "Meta-Upscale x3.7": lambda: up(feats, 3.7),
    }
    rows = []
    print("\n2. Inference on 240x240, batch 1, no grad")
    print("| what | ms | GFLOP | roofline GFLOP/s | roofline ms | ratio |")
    print("|---|---|---|---|---|---|")
    with torch.no_grad():
        for name, fn in cases.items():
            flops = count_flops(fn)
            seconds, local = median_seconds(fn, repeats)
            r = ratio(seconds, flops, local)
            rows.append({"what": name, "s": seconds, "gflop": flops / 1e9, "ratio": r,
                         "roofline_gflops": local})  # fmt: skip
            print(f"| {name} | {seconds * 1e3:.0f} | {flops / 1e9:.2f} | {local:.0f} "
                  f"| {flops / local / 1e6:.0f} | {r:.2f} |", flush=True)  # fmt: skip
    return rows


def part_step(rate: float, repeats: int) -> list[dict]:
    from metasrgan.train.config import LossConfig
    from metasrgan.train.step import gan_step

    model = shipped_model(train=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss = LossConfig(l1=1.0, adversarial=0.0, perceptual=0.0)
    torch.manual_seed(0)
    hr = torch.rand(8, 1, 96, 96).contiguous(memory_format=torch.channels_last)
    rows = []
    print("\n3. The shipped recipe's step (L1, batch 8, 96x96 HR, Adam): forward + backward")
    print("| acquisition, scale | s/step | samples/s | GFLOP/step | roofline GFLOP/s | ratio |")
    print("|---|---|---|---|---|---|")
    for acquisition, scale in STEP_CASES:
        sh, sw = scale if isinstance(scale, tuple) else (scale, scale)
        lr = F.interpolate(hr, size=(int(96 / sh), int(96 / sw)), mode="area")
        batch = {"lr": lr, "hr": hr[..., : int(lr.shape[-2] * sh), : int(lr.shape[-1] * sw)],
                 "scale": scale, "acquisition": acquisition}  # fmt: skip
        flops = count_flops(lambda b=batch: gan_step(b, model, None, opt, None, loss))
        seconds, local = median_seconds(
            lambda b=batch: gan_step(b, model, None, opt, None, loss), repeats
        )
        r = ratio(seconds, flops, local)
        rows.append({"acquisition": acquisition, "scale": str(scale), "s": seconds,
                     "samples_per_s": 8 / seconds, "gflop": flops / 1e9, "ratio": r,
                     "roofline_gflops": local})  # fmt: skip
        print(f"| {acquisition} {scale} | {seconds:.3f} | {8 / seconds:.1f} | {flops / 1e9:.1f} "
              f"| {local:.0f} | {r:.2f} |", flush=True)  # fmt: skip
    return rows


def part_trainer(steps: int, threads: int, bare_s: float) -> dict:
    from benchmarks.bench_train import bench_recipe

    config = str(Path(__file__).resolve().parent.parent / "configs" / "shipped.yaml")
    result = bench_recipe(config, steps, 0, threads)
    result["ratio_to_bare_step"] = result["median_s_per_step"] / bare_s
    print(f"\n4. Trainer on configs/shipped.yaml, {steps} updates (workers 0): "
          f"{result['median_s_per_step']:.3f} s/step = {result['samples_per_s']:.1f} samples/s; "
          f"{result['ratio_to_bare_step']:.2f}x the bare step's mean time", flush=True)  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--json", help="also write the results to this file")
    add_allocator_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    allocator = use_allocator(args.allocator)
    before = conv_rate()
    rate = before["gflops_best"]
    print(
        f"torch {torch.__version__}, {args.threads} threads, CPU; roofline: 64->64 3x3 conv "
        f"on 240x240 {rate:.1f} GFLOP/s (best of 7; median {before['gflops_median']:.1f}); "
        f"allocator: {allocator}"
    )
    results: dict = {"threads": args.threads, "roofline_before": before, "allocator": allocator}
    if 1 in args.parts:
        results["flops"] = part_flops()
    if 2 in args.parts:
        results["inference"] = part_inference(rate, args.repeats)
    if 3 in args.parts or 4 in args.parts:
        results["step"] = part_step(rate, args.repeats)
    if 4 in args.parts:
        bare = statistics.mean(r["s"] for r in results["step"])
        results["trainer"] = part_trainer(args.train_steps, args.threads, bare)
    results["roofline_after"] = conv_rate()
    print(f"roofline after: {results['roofline_after']['gflops_best']:.1f} GFLOP/s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
