"""Data loading + patch sampling throughput on 2 CPU cores, against a CPU training step.

Run: ``python benchmarks/bench_data.py [--subjects 2] [--steps 5]``.

Measured in one run, on the same machine and threads:
1. loading: BraTS-shaped volumes (240x240x155 int16 ``_t1ce.nii.gz``, made from the
   bundled real MRI) read, normalised, sliced, background-tested and cropped to 192x192
   by :func:`metasrgan.data.datasets.load_dataset`;
2. sampling: :class:`metasrgan.data.patches.PatchSampler` batches (8 x 96x96 HR patches,
   one scale per batch from 1.1..4.0, bicubic LR) from the loaded slices;
3. training: one step of the paper generator (Meta-SRGAN, batch 8, random scale,
   L1 + backward + Adam) on CPU.

Printed as ratios of data samples/s over the samples/s a training step consumes (wall
clock, and CPU time, which a busy shared machine disturbs less).  A ratio above 1 means
data loading is not the bottleneck.  Loading happens once per run (the slices stay in
memory), so the "amortised" figure spreads it over one epoch of patches (16 per slice).

``--recipe CONFIG`` (e.g. ``configs/shipped.yaml``) measures the training data path of that
recipe's first stage instead (its data sources, degradations, batch and patch sizes):

1. batches/s and the training process's CPU seconds per batch, made the old way (the
   sampler called in the training process, slices in a list) and through
   :func:`metasrgan.data.patches.batch_loader` with each ``--workers`` value, reading the
   memory-mapped :class:`metasrgan.data.store.SliceStore`;
2. RAM of ``--ranks`` processes that each hold the slices, as each DDP rank did (a private
   copy), against the same processes mapping one store: the sum of their proportional set
   sizes (``Pss`` in ``/proc/PID/smaps_rollup``: shared pages divided among the processes).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_brats_like(root: Path, subjects: int) -> None:
    """``subjects`` BraTS 2021-style folders of 240x240x155 real-MRI volumes."""
    import nibabel as nib

    from metasrgan.samples_path import sample_path

    slab = np.asarray(nib.load(sample_path("colin27_val")).dataobj, dtype=np.float32)
    for k in range(subjects):
        vol = np.zeros((240, 240, 155), np.int16)
        core = slab[:, :, np.arange(135) % slab.shape[2]][:181, :213]
        vol[30 : 30 + core.shape[0], 13 : 13 + core.shape[1], 10:145] = core * 4 + k
        folder = root / f"BraTS2021_{k:05d}"
        folder.mkdir(parents=True)
        img = nib.Nifti1Image(vol, np.diag([-1.0, -1.0, 1.0, 1.0]))
        nib.save(img, str(folder / f"BraTS2021_{k:05d}_t1ce.nii.gz"))


def bench_loading(root: Path) -> tuple[list[np.ndarray], float, int]:
    from metasrgan.data.datasets import load_dataset

    spec = {"kind": "brats", "root": str(root), "crop": [192, 192], "val_fraction": 0.0}
    start = time.perf_counter()
    result = load_dataset(spec, "train", progress=False)
    return result.images, time.perf_counter() - start, result.files


def bench_sampling(images: list[np.ndarray], steps: int) -> tuple[float, float]:
    """Wall and CPU seconds per batch of 8."""
    from metasrgan.data.patches import PatchSampler

    sampler = PatchSampler(images, batch_size=8, patch_size=96, seed=0)
    sampler.batch(0)
    start, cpu = time.perf_counter(), time.process_time()
    for step in range(1, steps + 1):
        sampler.batch(step)
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


def bench_training(images: list[np.ndarray], steps: int) -> tuple[float, float]:
    """Wall and CPU seconds per generator step (forward, L1, backward, Adam) at batch 8."""
    from metasrgan.data.patches import PatchSampler
    from metasrgan.registry import make

    model = make({"name": "meta-srgan"}).train()
    optim = torch.optim.Adam(model.parameters(), lr=1e-4)
    sampler = PatchSampler(images, batch_size=8, patch_size=96, seed=1)
    batches = [sampler.batch(s) for s in range(steps + 1)]
    times, cpus = [], []
    for i, batch in enumerate(batches):
        start, cpu = time.perf_counter(), time.process_time()
        out = model(batch["lr"], batch["scale"], tuple(batch["hr"].shape[-2:]))
        loss = torch.nn.functional.l1_loss(out, batch["hr"])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if i > 0:  # the first step pays one-off allocation costs
            times.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    return float(np.mean(times)), float(np.mean(cpus))


def _pss_kib() -> int:
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))


def _hold(images, store_path, barrier, results, rank) -> None:
    """One 'rank': a private copy of every slice, or the mapped store; Pss measured while
    every rank holds its data (a barrier), so shared pages are split among all of them."""
    from metasrgan.data.store import SliceStore

    barrier.wait()  # every rank forked: the pages they inherit are shared by all from here on
    before = _pss_kib()
    # a private copy: what each rank's own loading gave it
    held = [np.array(im) for im in images] if store_path is None else SliceStore(store_path)
    total = sum(float(held[i].sum()) for i in range(len(held)))  # every page read
    barrier.wait()
    results[rank] = (_pss_kib() - before, total)
    barrier.wait()


def bench_ranks_memory(images, store_path: Path, ranks: int) -> dict[str, float]:
    """MiB that ``ranks`` processes holding the slices add, copies against one mapped store."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    out = {}
    for label, path in (("copies", None), ("mapped", str(store_path))):
        barrier, results = ctx.Barrier(ranks), ctx.Manager().dict()
        procs = [
            ctx.Process(target=_hold, args=(images, path, barrier, results, r))
            for r in range(ranks)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        out[f"{label}_mib"] = sum(results[r][0] for r in range(ranks)) / 1024
    out["data_mib"] = sum(im.nbytes for im in images) / 2**20
    return out


def bench_loader(sampler, steps: int, workers: int | None) -> tuple[float, float]:
    """Batches/s and CPU seconds of this process per batch: ``workers=None`` calls the sampler
    here (the old path); else :func:`batch_loader` with that many worker processes."""
    from metasrgan.data.patches import batch_loader

    sampler.batch(0)  # warm-up (lazy imports, the epoch order)
    start, cpu = time.perf_counter(), time.process_time()
    if workers is None:
        for step in range(1, steps + 1):
            sampler.batch(step)
    else:
        for _ in batch_loader(sampler, 1, steps + 1, workers):
            pass
    return steps / (time.perf_counter() - start), (time.process_time() - cpu) / steps


def main_recipe(args) -> None:
    from metasrgan.data.store import SliceStore
    from metasrgan.train.config import load_config
    from metasrgan.train.stages import load_stage_images, stage_sampler

    cfg = load_config(args.recipe)
    started = time.perf_counter()
    images = load_stage_images(cfg.stages[0].data, "train")
    load_s = time.perf_counter() - started

    def sampler(source):
        return stage_sampler(cfg, 0, source)

    numbers: dict = {"recipe": args.recipe, "slices": len(images), "load_s": load_s}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stage-0.npy"
        started = time.perf_counter()
        store = SliceStore.write(path, images)
        numbers["store_write_s"] = time.perf_counter() - started
        print(f"{args.recipe}: {len(images)} slices, batch {cfg.batch_size} x {cfg.patch_size}")
        if args.ranks:  # first: this process has not mapped the store yet
            mem = bench_ranks_memory(images, path, args.ranks)
            numbers["memory"] = mem
            print(
                f"  RAM of {args.ranks} ranks holding the {mem['data_mib']:.0f} MiB of slices: "
                f"private copies {mem['copies_mib']:.0f} MiB, one mapped store "
                f"{mem['mapped_mib']:.0f} MiB"
            )
        rows = [("in-process, list (before)", sampler(images), None)]
        rows += [(f"DataLoader, {w} workers, store", sampler(store), w) for w in args.workers]
        for label, s, w in rows:
            rate, cpu = bench_loader(s, args.sample_steps, w)
            numbers[label] = {"batches_per_s": rate, "main_cpu_s_per_batch": cpu}
            print(
                f"  {label:32s} {rate * cfg.batch_size:7.1f} samples/s, "
                f"{cpu * 1000:6.1f} ms CPU per batch in the training process",
                flush=True,
            )
    if args.json:
        print(json.dumps(numbers, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", help="measure this config's training data path instead")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ranks", type=int, default=2, help="with --recipe: RAM of N ranks")
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    if args.recipe:
        main_recipe(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        make_brats_like(Path(tmp), args.subjects)
        images, load_s, files = bench_loading(Path(tmp))
    per_batch, cpu_batch = bench_sampling(images, args.sample_steps)
    per_step, cpu_step = bench_training(images, args.train_steps)

    train_rate = 8 / per_step
    sample_rate = 8 / per_batch
    load_rate = len(images) / load_s  # slices/s
    epoch_patches = len(images) * 16
    amortised = epoch_patches / (load_s + epoch_patches / sample_rate)
    numbers = {
        "threads": args.threads,
        "volumes": files,
        "slices": len(images),
        "load_s": load_s,
        "load_slices_per_s": load_rate,
        "sampling_samples_per_s": sample_rate,
        "amortised_samples_per_s": amortised,
        "train_step_s": per_step,
        "train_samples_per_s": train_rate,
        "ratio_sampling_vs_training": sample_rate / train_rate,
        "ratio_amortised_vs_training": amortised / train_rate,
        "cpu_s_per_batch_sampling": cpu_batch,
        "cpu_s_per_train_step": cpu_step,
        "cpu_ratio_training_vs_sampling": cpu_step / cpu_batch,
    }
    if args.json:
        print(json.dumps(numbers, indent=2))
        return
    print(f"threads: {args.threads}")
    print(
        f"loading:  {files} BraTS-shaped volumes -> {len(images)} slices (192x192 crop) in "
        f"{load_s:.2f} s = {load_rate:.1f} slices/s"
    )
    print(f"sampling: {sample_rate:.0f} samples/s (batches of 8 x 96x96, bicubic LR)")
    print(f"epoch incl. loading: {amortised:.0f} samples/s (16 patches per slice)")
    print(f"training: {per_step:.3f} s per generator step at batch 8 = {train_rate:.1f} samples/s")
    print(
        f"ratio data/training: sampling {sample_rate / train_rate:.1f}x, "
        f"with loading {amortised / train_rate:.1f}x (>1: data is not the bottleneck)"
    )
    print(
        f"CPU time (robust to other load on the machine): a batch costs {cpu_batch:.3f} s to "
        f"sample and {cpu_step:.2f} s to train on: sampling is {cpu_step / cpu_batch:.0f}x cheaper"
    )


if __name__ == "__main__":
    main()
