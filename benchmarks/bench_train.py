"""Training steps/s of the paper configuration, per scale, against the per-pixel upscaler.

Run: ``python benchmarks/bench_train.py [--threads 2] [--steps 2] [--scales 1.5 2 3 4]``
(``--device cuda`` on a GPU: bfloat16 autocast and channels-last, as the trainer does).

One step is :func:`metasrgan.train.step.gan_step` exactly as ``configs/paper.yaml`` trains:
Meta-SRGAN (64 features, 5 blocks, batch norm) and SRGAN's discriminator, batch 8, 96x96 HR
patches of the bundled real MRI, loss ``L1 + 0.001 GAN + 0.006 VGG19``, Adam on both.  The
perceptual term runs an **un-pretrained** VGG19 (the ImageNet weights cannot be downloaded
here); its cost is the same as the pretrained network's.

Baseline, measured in the same run with the same weights and batches: the same step with
the Meta-Upscale Module's per-pixel reference implementation (``upscaler: reference``,
Meta-SR's original formulation).  Steps of the two alternate, so a change of machine load
hits both.  Printed: seconds per step, steps/s and the speed-up over the baseline.

``--recipe CONFIG`` measures the whole trainer instead: :class:`metasrgan.train.loop.Trainer`
runs the config's first stage for ``--steps`` updates (validation off) with each
``--workers`` value (DataLoader worker processes; ``-1``: code without the field, e.g. a copy
of the code before it was added on ``PYTHONPATH``), and reports the samples/s that reach the
optimiser, from the log's ``steps_per_s`` (data fetch + update, first update left out), and
the training process's own CPU seconds per update (from one update to the next: with
workers, the batches' CPU time is spent in other processes).  With ``--alternate`` the old
and the new data path run in one process on the same networks, update by update, so that a
change of machine load hits both (the steadier comparison on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext

import numpy as np
import torch


def mri_images() -> list[np.ndarray]:
    """Axial slices of the bundled real MRI slabs, in [0, 1]."""
    import nibabel as nib

    from metasrgan.samples_path import sample_path

    out = []
    for name in ("mni152_val", "colin27_val"):
        vol = np.asarray(nib.load(sample_path(name)).dataobj, dtype=np.float32)
        vol = np.clip(vol / np.percentile(vol, 99.5), 0, 1)
        out += [np.ascontiguousarray(vol[:, :, k]) for k in range(0, vol.shape[2], 3)]
    return out


def build(upscaler: str, device: torch.device, fast_gpu: bool):
    from metasrgan.models.vgg import VGG19Features
    from metasrgan.registry import make

    torch.manual_seed(0)
    g = make({"name": "meta-srgan", "args": {"norm": "batch", "upscaler": upscaler}})
    d = make({"name": "discriminator", "args": {}})
    vgg = VGG19Features()  # un-pretrained: same cost as the ImageNet weights
    models = [m.to(device) for m in (g, d, vgg)]
    if fast_gpu:
        models = [m.to(memory_format=torch.channels_last) for m in models]
    g, d, vgg = models
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-4)
    return g, d, vgg.eval(), opt_g, opt_d


def bench_recipe(config: str, steps: int, workers: int, threads: int) -> dict:
    """Samples/s of the trainer on ``config``'s first stage (see the module docstring)."""
    import tempfile
    from pathlib import Path

    import metasrgan.train.loop as loop
    from metasrgan.train.config import load_config
    from metasrgan.train.loop import Trainer

    overrides = [
        f"stages.0.steps={steps}", "validate_every=0", "sample_every=0", "log_every=1",
        f"checkpoint_every={10 * steps}", f"threads={threads}", "device=cpu",
    ]  # fmt: skip
    if workers >= 0:
        overrides.append(f"workers={workers}")
    cfg = load_config(config, overrides)
    cfg.stages = cfg.stages[:1]
    cpu_marks: list[float] = []
    real_step = loop.gan_step

    def marked_step(*a, **k):  # this process's CPU clock at each update
        cpu_marks.append(time.process_time())
        return real_step(*a, **k)

    loop.gan_step = marked_step
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            run.mkdir()
            started = time.perf_counter()
            Trainer(cfg, run, progress=False).fit()
            total = time.perf_counter() - started
            lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    finally:
        loop.gan_step = real_step
    rates = [x["train/steps_per_s"] for x in lines if "train/steps_per_s" in x][1:]
    step_s = statistics.median(1 / r for r in rates)
    cpu_s = statistics.median(np.diff(cpu_marks)[1:])  # update + fetching the next batch
    return {
        "workers": workers, "steps": steps, "median_s_per_step": step_s,
        "samples_per_s": cfg.batch_size / step_s, "main_cpu_s_per_step": float(cpu_s),
        "total_s": total,
    }  # fmt: skip


def bench_recipe_alternating(config: str, steps: int, workers: int, threads: int) -> dict:
    """The old and the new data path in one process, update by update on the same networks:
    batches made here from slices in a list (before) or fetched from :func:`batch_loader`'s
    workers over the mapped store (after), each followed by the recipe's update."""
    import tempfile
    from pathlib import Path

    from metasrgan.data.patches import batch_loader
    from metasrgan.data.store import SliceStore
    from metasrgan.registry import make
    from metasrgan.train.config import load_config
    from metasrgan.train.stages import load_stage_images, stage_sampler
    from metasrgan.train.step import gan_step

    cfg = load_config(config, [f"threads={threads}", "device=cpu"])
    loss = cfg.stage_loss(cfg.stages[0])
    torch.manual_seed(0)
    g = make(cfg.model).train()
    d = make(cfg.discriminator).train() if loss.adversarial > 0 else None
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.optim.lr)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.optim.d_lr) if d is not None else None
    vgg = None
    if loss.perceptual > 0:
        from metasrgan.models.vgg import VGG19Features

        vgg = VGG19Features().eval()  # un-pretrained: same cost
    images = load_stage_images(cfg.stages[0].data, "train")
    times: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = SliceStore.write(Path(tmp) / "stage-0.npy", images)
        before = stage_sampler(cfg, 0, images)
        after = iter(batch_loader(stage_sampler(cfg, 0, store), 0, steps + 1, workers))
        for step in range(steps + 1):
            for name in ("before", "after"):
                start, cpu = time.perf_counter(), time.process_time()
                batch = before.batch(step) if name == "before" else next(after)
                gan_step(batch, g, d, opt_g, opt_d, loss, vgg)
                if step:  # the first pair pays one-off costs (workers starting, allocations)
                    times[name].append((time.perf_counter() - start, time.process_time() - cpu))
        del after
    row: dict = {"workers": workers, "steps": steps}
    for name, t in times.items():
        wall = statistics.median(x[0] for x in t)
        row[f"{name}_s_per_step"] = wall
        row[f"{name}_samples_per_s"] = cfg.batch_size / wall
        row[f"{name}_cpu_s_per_step"] = statistics.median(x[1] for x in t)
    row["ratio_samples_per_s"] = row["before_s_per_step"] / row["after_s_per_step"]
    return row


def _recipe_line(args, r: dict) -> str:
    if args.alternate:
        return (
            f"{args.recipe}, alternating, {r['steps']} steps each: before "
            f"{r['before_samples_per_s']:.2f} samples/s ({r['before_cpu_s_per_step']:.3f} "
            f"CPU-s/step here), after with {r['workers']} workers "
            f"{r['after_samples_per_s']:.2f} samples/s ({r['after_cpu_s_per_step']:.3f} "
            f"CPU-s/step here): ratio {r['ratio_samples_per_s']:.3f}"
        )
    return (
        f"{args.recipe}: workers {r['workers']}: {r['median_s_per_step']:.3f} s/step = "
        f"{r['samples_per_s']:.2f} samples/s; training process "
        f"{r['main_cpu_s_per_step']:.3f} CPU-s/step ({r['steps']} steps, "
        f"{r['total_s']:.0f} s in all)"
    )


def main_recipe(args) -> None:
    torch.set_num_threads(args.threads)
    bench = bench_recipe_alternating if args.alternate else bench_recipe
    rows = []
    for w in args.workers:
        rows.append(bench(args.recipe, args.steps, w, args.threads))
        print(_recipe_line(args, rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"recipe": args.recipe, "alternate": args.alternate, "rows": rows}, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per scale and variant")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.5, 2.0, 3.0, 4.0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--perceptual", type=float, default=0.006, help="VGG19 weight (0: no VGG19 in the step)"
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--recipe", help="time the whole trainer on this config instead")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument(
        "--alternate", action="store_true",
        help="with --recipe: old and new data path alternating update by update, one process",
    )  # fmt: skip
    args = parser.parse_args()
    if args.recipe:
        main_recipe(args)
        return

    from metasrgan.data.patches import PatchSampler, exact_patch_sizes
    from metasrgan.train.config import LossConfig
    from metasrgan.train.step import gan_step

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fast_gpu = device.type == "cuda"
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16))
        if fast_gpu
        else (lambda: nullcontext())
    )
    loss = LossConfig(l1=1.0, adversarial=0.001, perceptual=args.perceptual)
    variants = {
        "fast": build("fast", device, fast_gpu),
        "reference": build("reference", device, fast_gpu),
    }
    variants["reference"][0].load_state_dict(variants["fast"][0].state_dict())
    variants["reference"][1].load_state_dict(variants["fast"][1].state_dict())
    images = mri_images()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    print(
        f"paper GAN step (Meta-SRGAN + discriminator, VGG19 weight {args.perceptual:g}, "
        f"un-pretrained), batch {args.batch}, "
        f"{args.threads} CPU threads, device {device}; torch {torch.__version__}"
    )
    print(f"{'scale':>5} {'HR':>6} {'LR':>6} {'fast s/step':>12} {'ref s/step':>11} "
          f"{'fast steps/s':>13} {'speed-up':>9} {'fast cpu-s':>9} {'ref cpu-s':>9} "
          f"{'cpu ratio':>9}")  # fmt: skip

    def timed_step(name: str, batch: dict) -> tuple[float, float]:
        """(wall seconds, CPU seconds of this process) of one step."""
        g, d, vgg, opt_g, opt_d = variants[name]
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        gan_step(batch, g, d, opt_g, opt_d, loss, vgg, autocast())
        sync()
        return time.perf_counter() - start, time.process_time() - cpu

    def batches(scale: float, steps: int):
        sampler = PatchSampler(images, batch_size=args.batch, patch_size=96, scales=[scale])
        for step in range(steps):
            b = sampler.batch(step)
            hr, lr = b["hr"].to(device), b["lr"].to(device)
            if fast_gpu:
                hr = hr.contiguous(memory_format=torch.channels_last)
                lr = lr.contiguous(memory_format=torch.channels_last)
            yield {"hr": hr, "lr": lr, "scale": scale}

    for batch in batches(2.0, 1):  # warm-up: allocations, kernel choices, lazy imports
        for name in variants:
            timed_step(name, batch)
    results = []
    for scale in args.scales:
        hr_side, lr_side = exact_patch_sizes(scale, 96)
        times: dict[str, list[tuple[float, float]]] = {"fast": [], "reference": []}
        for batch in batches(scale, args.steps):
            for name in variants:  # alternate: a change of load hits both
                times[name].append(timed_step(name, batch))
        fast = statistics.median(t[0] for t in times["fast"])
        ref = statistics.median(t[0] for t in times["reference"])
        fast_cpu = statistics.median(t[1] for t in times["fast"])
        ref_cpu = statistics.median(t[1] for t in times["reference"])
        row = {
            "scale": scale, "hr": hr_side, "lr": lr_side, "fast_s_per_step": fast,
            "reference_s_per_step": ref, "fast_steps_per_s": 1 / fast, "speedup": ref / fast,
            "fast_cpu_s_per_step": fast_cpu, "reference_cpu_s_per_step": ref_cpu,
            "speedup_cpu": ref_cpu / fast_cpu,
        }  # fmt: skip
        results.append(row)
        print(
            f"{scale:>5g} {hr_side:>6} {lr_side:>6} {fast:>12.2f} {ref:>11.2f} "
            f"{1 / fast:>13.3f} {ref / fast:>8.2f}x {fast_cpu:>9.2f} {ref_cpu:>9.2f} "
            f"{ref_cpu / fast_cpu:>8.2f}x",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"device": str(device), "threads": args.threads, "rows": results}, f, indent=1
            )


if __name__ == "__main__":
    main()
