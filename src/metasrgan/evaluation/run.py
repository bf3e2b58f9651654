"""The evaluation loop: every method on the same degraded LR, image by image."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch

from metasrgan.evaluation.inputs import EvalImage
from metasrgan.evaluation.methods import Method
from metasrgan.evaluation.protocol import (
    REGIONS,
    Prepared,
    information_window,
    prepare,
    region_metrics,
    shift_window,
)
from metasrgan.scale import Scale2d


def parse_scales(text: str) -> list[Fraction]:
    """``"1.1:4.0:0.1"`` (inclusive), ``"2,3,4"``, or a mix; exact fractions, sorted."""
    from metasrgan.scale import parse_scales as parse

    return list(parse(text, "--scales", sort=True))


@torch.no_grad()
def upscale(
    method: Method,
    lr: torch.Tensor,
    scale,
    shape: tuple[int, int],
    acquisition: str | None = None,
) -> torch.Tensor:
    """``[B, 1, h, w]`` LR in [0, 1] -> ``[B, 1, *shape]`` clamped to [0, 1] (a self-ensemble
    for methods with ``ensemble``)."""
    from metasrgan.inference import upscale_tensor
    from metasrgan.interpolation import interpolate

    if method.model is None:
        return interpolate(lr, shape, method.interpolation or "bicubic").clamp_(0.0, 1.0)
    model = method.model
    device = next(iter(model.parameters())).device
    extra = {"acquisition": acquisition} if getattr(model, "acquisitions", ()) else {}
    out = upscale_tensor(model, lr.to(device), Scale2d.of(scale), shape, **extra,
                         ensemble=method.ensemble)  # fmt: skip
    if tuple(out.shape[-2:]) != tuple(shape):
        raise ValueError(
            f"{method.label} returned {tuple(out.shape[-2:])} for an expected {tuple(shape)}"
        )
    return out.float().cpu()


def _adapted(method: Method, batches: Sequence[Prepared], chain, fitted: dict) -> Method:
    """``method`` with its network adapted to the LR inputs of one source at one scale
    (every slice of it being evaluated), by the pairs ``upscale --adapt`` would make.
    Thick slices are not adapted to: ``upscale`` makes their pairs from a volume's fine
    slices, which a 2D benchmark slice lacks (thinning its thick axis again measured
    something no run does; ``benchmarks/bench_through_plane.py --adapt`` measures volumes).
    ``fitted`` holds this source and scale's adapted networks by (network, ``adapt``), so
    a method and its self-ensemble share one adaptation."""
    from metasrgan.adapt import adapt_model, adaptation
    from metasrgan.degradations import ACQUISITIONS

    key = (id(method.model), method.adapt)
    if key not in fitted:
        fitted[key] = method.model
        if not ACQUISITIONS[chain.acquisition].through_plane:
            pair = batches[0].scale.fractions
            options, tasks = adaptation(method.adapt, [(pair, False)], method.model,
                                        batches[0].acquisition)  # fmt: skip
            if tasks:
                lr = torch.cat([b.lr for b in batches])[:, 0].numpy()
                fitted[key] = adapt_model(method.model, lr, tasks, options)
    return dataclasses.replace(method, model=fitted[key])


def evaluate(
    images: Sequence[EvalImage],
    methods: Sequence[Method],
    scales: Sequence[Fraction],
    degradation="bicubic",
    crop_size: tuple[int, int] = (128, 128),
    batch_size: int = 8,
    mask_threshold: float = 0.0,
    progress: bool = True,
    name: str | None = None,
) -> list[dict]:
    """Per-image rows ``{image, method, scale, region, psnr, ssim, degradation}``.

    ``degradation``: a preset name or chain (see :mod:`metasrgan.degradations`); ``name``
    labels its rows (default: the preset name, else the chain's description).  Images of
    one source and shape are batched (``batch_size`` at a time); methods with ``adapt``
    are adapted once per source and scale; the bar counts images times scales.
    """
    from tqdm import tqdm

    from metasrgan.degradations import Chain, make_chain

    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    chain = degradation if isinstance(degradation, Chain) else make_chain(degradation)
    name = name or chain.preset or chain.text
    for im in images:
        im.window = information_window(im.array, crop_size)
    groups: dict[tuple[str, tuple[int, int]], list[int]] = {}
    for i, im in enumerate(images):  # adaptation fits one source (scan) at a time
        groups.setdefault((im.name.split(":")[0], tuple(im.array.shape)), []).append(i)
    rows: dict[tuple[int, str, Fraction], dict[str, tuple[float, float]]] = {}
    bar = tqdm(total=len(images) * len(scales), unit="image", desc=f"evaluate {name}",
               disable=not progress)  # fmt: skip
    for indices in groups.values():
        chunks = [indices[k : k + batch_size] for k in range(0, len(indices), batch_size)]
        hr_full = [torch.from_numpy(np.stack([images[i].array for i in c]))[:, None]
                   for c in chunks]  # fmt: skip
        for scale in scales:
            batches = [prepare(hr, scale, chain, seed=c[0])
                       for hr, c in zip(hr_full, chunks, strict=True)]  # fmt: skip
            fitted: dict = {}
            runs = [_adapted(m, batches, chain, fitted) if m.adapt else m for m in methods
                    if m.runs_at(scale)]  # fmt: skip
            for chunk, batch in zip(chunks, batches, strict=True):
                hr_np = batch.hr[:, 0].numpy().astype(np.float64)
                shape = tuple(batch.hr.shape[-2:])
                for method in runs:
                    sr = upscale(method, batch.lr, batch.scale, shape, batch.acquisition)
                    sr = sr[:, 0].numpy().astype(np.float64)
                    for k, i in enumerate(chunk):
                        window = shift_window(images[i].window, batch.origin, shape)
                        rows[(i, method.label, scale)] = region_metrics(
                            sr[k], hr_np[k], window, mask_threshold
                        )
                bar.update(len(chunk))
    bar.close()
    order = {m.label: k for k, m in enumerate(methods)}
    out = []
    for (i, label, scale), metrics in sorted(
        rows.items(), key=lambda kv: (kv[0][2], order[kv[0][1]], kv[0][0])
    ):
        for region in REGIONS:
            p, s = metrics[region]
            out.append(
                {
                    "degradation": name,
                    "image": images[i].name,
                    "method": label,
                    "scale": scale,
                    "region": region,
                    "psnr": p,
                    "ssim": s,
                }
            )
    return out
