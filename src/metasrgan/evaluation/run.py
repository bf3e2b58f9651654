"""The evaluation loop: every method on the same degraded LR, image by image."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch

from metasrgan.evaluation.inputs import EvalImage
from metasrgan.evaluation.methods import Method
from metasrgan.evaluation.protocol import (
    REGIONS,
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
    """``[B, 1, h, w]`` LR in [0, 1] -> ``[B, 1, *shape]`` clamped to [0, 1]."""
    from metasrgan.inference import upscale_tensor
    from metasrgan.interpolation import interpolate

    if method.model is None:
        return interpolate(lr, shape, method.interpolation or "bicubic").clamp_(0.0, 1.0)
    model = method.model
    device = next(iter(model.parameters())).device
    extra = {"acquisition": acquisition} if getattr(model, "acquisitions", ()) else {}
    out = upscale_tensor(model, lr.to(device), Scale2d.of(scale), shape, **extra)
    if tuple(out.shape[-2:]) != tuple(shape):
        raise ValueError(
            f"{method.label} returned {tuple(out.shape[-2:])} for an expected {tuple(shape)}"
        )
    return out.float().cpu()


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
    the same shape are batched (``batch_size`` at a time); the bar counts images.
    """
    from tqdm import tqdm

    from metasrgan.degradations import Chain, make_chain

    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    chain = degradation if isinstance(degradation, Chain) else make_chain(degradation)
    name = name or chain.preset or chain.text
    for im in images:
        im.window = information_window(im.array, crop_size)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(im.array.shape), []).append(i)
    rows: dict[tuple[int, str, Fraction], dict[str, tuple[float, float]]] = {}
    bar = tqdm(total=len(images), unit="image", desc=f"evaluate {name}", disable=not progress)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            hr_full = torch.from_numpy(np.stack([images[i].array for i in chunk]))[:, None]
            for scale in scales:
                batch = prepare(hr_full, scale, chain, seed=chunk[0])
                hr_np = batch.hr[:, 0].numpy().astype(np.float64)
                shape = tuple(batch.hr.shape[-2:])
                for method in methods:
                    if not method.runs_at(scale):
                        continue
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
