"""Training batches: random HR patches, one scale per mini-batch, LR made on the fly.

Every batch is a pure function of ``(seed, step, rank)``: the epoch order is a permutation
seeded by ``(seed, epoch)`` and each batch draws its scale, crops and flips from a generator
seeded by ``(seed, step, rank)`` (the scale by ``(seed, step)`` alone: every rank of a
distributed run uses the same scale, so a global batch has one scale).  Resuming at step
``t`` therefore reproduces exactly the batches an uninterrupted run would have seen, with
no sampler state to save, and ranks of a distributed run read disjoint positions of the same
epoch order.

Patch sizes are exact: for ``s = p/q`` the HR patch side is ``k*p`` and the LR side ``k*q``
with ``k = floor(patch_size / p)``, so the LR patch times the scale is the HR patch exactly
(targets are cropped, never resized).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metasrgan.degradations import DegradationPlan, make_plan
from metasrgan.scale import TRAINED_SCALES, AxisScale


def exact_patch_sizes(scale, patch_size: int = 96) -> tuple[int, int]:
    """``(hr_side, lr_side)``: ``lr_side * scale == hr_side`` exactly, ``hr_side <= patch_size``."""
    axis = AxisScale.of(scale)
    k = patch_size // axis.p
    if k < 1:
        raise ValueError(
            f"scale {axis.value:g} = {axis.p}/{axis.q} needs HR patches of at least {axis.p} "
            f"pixels for an exact LR size; patch_size is {patch_size}"
        )
    return k * axis.p, k * axis.q


@dataclass
class Augment:
    """Random flips / 90-degree rotations, and optional intensity changes (gamma, gain)
    that make the model less tied to one scanner's contrast."""

    flip: bool = True
    rot90: bool = True
    gamma: tuple[float, float] | None = None
    gain: tuple[float, float] | None = None


class PatchSampler:
    """Batches ``{"hr": [B,1,H,W], "lr": [B,1,h,w], "scale": float}`` from 2D images in [0, 1].

    Args:
        images: 2D float32 arrays (already normalised and cropped).
        patches_per_image: patches drawn from each image per epoch (paper: 16).
        scales: one is drawn uniformly per batch (paper: 1.1 .. 4.0 step 0.1).
        degradation: a preset name (``"bicubic"``: the paper's), a chain, a mixture spec or a
            :class:`~metasrgan.degradations.DegradationPlan` (see
            :func:`~metasrgan.degradations.make_plan`); each batch draws one chain and one of
            its scales.  Through-plane chains (thick slices) use (s, 1) scales, transposed
            to (1, s) for half of their batches.
        rank, world_size: distributed sampling: ranks read disjoint positions.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        batch_size: int = 8,
        patch_size: int = 96,
        scales: Sequence[float] = TRAINED_SCALES,
        patches_per_image: int = 16,
        degradation: str | dict | DegradationPlan = "bicubic",
        augment: Augment | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not images:
            raise ValueError("no training images: check the data sources of the config")
        self.images = [
            torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32)) for im in images
        ]
        for i, im in enumerate(self.images):
            if im.dim() != 2:
                raise ValueError(f"training image {i} is not 2D: shape {tuple(im.shape)}")
        self.batch_size = batch_size
        self.patch_size = patch_size
        self.plan = (
            degradation
            if isinstance(degradation, DegradationPlan)
            else make_plan(degradation, tuple(scales))
        )
        for option in self.plan.options:
            for s in option.scales:
                exact_patch_sizes(s, patch_size)  # fail early on impossible scales
        self.patches_per_image = patches_per_image
        self.augment = augment or Augment()
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch_length = len(self.images) * patches_per_image
        self._order_epoch = -1
        self._order = torch.empty(0, dtype=torch.long)

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if epoch != self._order_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(self.epoch_length, generator=g) % len(self.images)
            self._order_epoch = epoch
        return self._order

    def image_indices(self, step: int) -> list[int]:
        start = (step * self.world_size + self.rank) * self.batch_size
        out = []
        for pos in range(start, start + self.batch_size):
            epoch, offset = divmod(pos, self.epoch_length)
            out.append(int(self._epoch_order(epoch)[offset]))
        return out

    def batch(self, step: int) -> dict:
        # the scale comes from rank 0's generator: one scale for the whole global batch
        g = torch.Generator().manual_seed((self.seed * 7_919 + step) * 4_099)
        option = self.plan.draw(g)
        scale = option.scales[int(torch.randint(len(option.scales), (1,), generator=g))]
        pair = option.chain.scale_pair(scale)
        transpose = pair[0] != pair[1] and bool(torch.rand(1, generator=g) < 0.5)
        if self.rank:
            g = torch.Generator().manual_seed((self.seed * 7_919 + step) * 4_099 + self.rank)
        (hr_h, lr_h), (hr_w, lr_w) = (exact_patch_sizes(s, self.patch_size) for s in pair)
        indices = self.image_indices(step)
        patches = [self._patch(self.images[i], (hr_h, hr_w), g) for i in indices]
        hr = torch.stack(patches)[:, None]
        hr = self._intensity(hr, g)
        lr = option.chain(hr, (lr_h, lr_w), g)
        if transpose:
            hr, lr, pair = hr.transpose(-2, -1), lr.transpose(-2, -1), pair[::-1]
        return {
            "hr": hr.contiguous(),
            "lr": lr.contiguous(),
            "scale": scale if pair[0] == pair[1] else pair,
            "acquisition": option.chain.acquisition,
        }

    def __iter__(self):
        step = 0
        while True:
            yield self.batch(step)
            step += 1

    def _patch(
        self, image: torch.Tensor, shape: tuple[int, int], g: torch.Generator
    ) -> torch.Tensor:
        """A random ``shape`` patch: a square of the longer side, flipped and rotated, then
        its top-left ``shape`` (so rotations never change the patch's shape)."""
        side = max(shape)
        h, w = image.shape
        if h < side or w < side:  # small images: zero padding (MRI background is zero)
            pad = (0, max(0, side - w), 0, max(0, side - h))
            image = torch.nn.functional.pad(image, pad)
            h, w = image.shape
        top = int(torch.randint(h - side + 1, (1,), generator=g))
        left = int(torch.randint(w - side + 1, (1,), generator=g))
        patch = image[top : top + side, left : left + side]
        aug = self.augment
        if aug.flip and torch.rand(1, generator=g) < 0.5:
            patch = patch.flip(-1)
        if aug.flip and torch.rand(1, generator=g) < 0.5:
            patch = patch.flip(-2)
        if aug.rot90:
            patch = torch.rot90(patch, int(torch.randint(4, (1,), generator=g)), (-2, -1))
        return patch[: shape[0], : shape[1]].contiguous()

    def _intensity(self, hr: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        aug = self.augment
        n = hr.shape[0]
        if aug.gamma:
            lo, hi = np.log(aug.gamma[0]), np.log(aug.gamma[1])
            gamma = torch.exp(lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=g))
            hr = hr.clamp(0.0, 1.0) ** gamma
        if aug.gain:
            lo, hi = aug.gain
            hr = hr * (lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=g))
        return hr
