"""What one training stage runs on: its slices, its patch sampler, its optimizer's
parameter groups, and the record of a stage under way (:class:`StageRun`).  The loop that
runs it is :mod:`metasrgan.train.loop`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from metasrgan.data.patches import PatchSampler
from metasrgan.scale import parse_scales
from metasrgan.train.config import ConfigError, LossConfig, StageConfig, TrainConfig
from metasrgan.train.runs import Dist


@dataclass
class StageRun:
    """One stage under way: where it starts and ends (global steps), its loss, and the
    optimizers and schedules it owns (fresh per stage)."""

    index: int
    stage: StageConfig
    start: int
    loss: LossConfig
    opt_g: torch.optim.Optimizer
    sched_g: Any
    opt_d: torch.optim.Optimizer | None = None
    sched_d: Any = None

    @property
    def end(self) -> int:
        return self.start + self.stage.steps


def load_stage_images(sources: list[dict], split: str) -> list[np.ndarray]:
    """The slices of ``sources``; in training, a source's ``repeat: N`` lists each of its
    slices N times (N times the patches per epoch: a small source's share of the batches;
    the store keeps one copy)."""
    from metasrgan.data.datasets import load_slices

    images: list[np.ndarray] = []
    for spec in sources:
        repeat = int(spec.get("repeat", 1)) if split == "train" else 1
        images.extend(load_slices(spec, split) * repeat)
    return images


def stage_sampler(cfg: TrainConfig, index: int, images, dist: Dist | None = None) -> PatchSampler:
    """The patch sampler of stage ``index`` on ``images`` (a list or a SliceStore)."""
    stage, dist = cfg.stages[index], dist or Dist()
    aug = stage.augment or cfg.augment
    return PatchSampler(
        images,
        batch_size=cfg.batch_size,
        patch_size=cfg.patch_size,
        scales=parse_scales(cfg.scales, as_float=True),
        patches_per_image=cfg.patches_per_image,
        degradation=stage.degradation or cfg.degradation,
        augment=aug,
        seed=cfg.seed + 1000 * index,
        rank=dist.rank,
        world_size=dist.world_size,
    )


def lr_groups(model: nn.Module, lr: float, scales: dict[str, float]) -> list[dict]:
    """Adam parameter groups: ``lr``, and ``lr * factor`` for the parameters whose names
    start with a key of ``scales`` (the longest key wins); a key that names no parameter is
    a :class:`~metasrgan.train.config.ConfigError`."""
    groups: dict[float, list] = {lr: []}  # the base group first: logs and resume read it
    used = set()
    for name, param in model.named_parameters():
        keys = [k for k in scales if name == k or name.startswith(k + ".")]
        key = max(keys, key=len) if keys else None
        used.update(keys)
        groups.setdefault(lr * scales[key] if key else lr, []).append(param)
    unused = sorted(set(scales) - used)
    if unused:
        raise ConfigError(f"optim.lr_scales: no generator parameter is named {', '.join(unused)}")
    return [{"params": params, "lr": value} for value, params in groups.items() if params]
