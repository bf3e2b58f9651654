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

Because a batch depends on its step alone, :class:`PatchBatches` is a map-style dataset keyed
by step, and :func:`batch_loader` puts it behind a ``DataLoader`` whose worker processes make
the batches (crops, degradations) while the training process trains; the batches are the
same with any number of workers.  The images may be a
:class:`~metasrgan.data.store.SliceStore`: each worker then reads the shared memory-mapped
file instead of holding a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metasrgan.degradations import DegradationPlan, fourier_resize, make_plan
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
    that make the model less tied to one scanner's contrast.

    ``zoom`` ``[low, high]`` (with probability ``zoom_p`` per patch): the patch is a coarser
    acquisition of the same anatomy, a crop ``z`` times larger (``z`` log-uniform) truncated
    in k-space to the patch size (mirrored borders): structures ``z`` times smaller in
    pixels, sharp up to the new Nyquist, with the Gibbs ringing a scanner's matrix leaves.
    Two adult templates at 1 mm show anatomy at one pixel scale; scans at 2-4 mm, small
    brains and small matrices do not.

    ``contrast_p``: the probability that a patch's intensities pass through a random
    piecewise-linear curve (``CONTRAST_SEGMENTS`` equal segments, 0 kept at 0 so background
    stays dark, knots uniform in [0, 1] then scaled so the highest is 1): tissues swap
    brightness (T2-like inversions included), as SynthSeg and SynthSR randomise contrast.
    Two T1 templates show one contrast; EPI, T2 and FLAIR scans do not.  Applied to the HR
    before the degradation (and before ``gamma``/``gain``), so the pair stays consistent.
    """

    flip: bool = True
    rot90: bool = True
    gamma: tuple[float, float] | None = None
    gain: tuple[float, float] | None = None
    zoom: tuple[float, float] | None = None
    zoom_p: float = 0.5
    contrast_p: float = 0.0


CONTRAST_SEGMENTS = 4
"""Segments of the random contrast curve: tissues (grey, white, CSF, fat) fall apart."""


def random_contrast(hr: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Each image of ``hr`` ``[N, 1, H, W]`` (in [0, 1]) through its own random curve with
    probability ``p`` (see :class:`Augment`); the others unchanged."""
    n, k = hr.shape[0], CONTRAST_SEGMENTS
    picked = torch.rand(n, generator=g) < p
    knots = torch.rand(n, k + 1, generator=g)
    knots[:, 0] = 0.0
    knots /= knots.amax(1, keepdim=True)
    x = hr.clamp(0.0, 1.0).flatten(1) * k
    segment = x.floor().clamp_(max=k - 1)
    at = segment.long()
    curve = torch.lerp(knots.gather(1, at), knots.gather(1, at + 1), x - segment)
    return torch.where(picked.view(n, 1, 1, 1), curve.view_as(hr), hr)


class PatchSampler:
    """Batches ``{"hr": [B,1,H,W], "lr": [B,1,h,w], "scale": float}`` from 2D images in [0, 1].

    Args:
        images: 2D float32 arrays (already normalised and cropped): a list, or a
            :class:`~metasrgan.data.store.SliceStore` (read one crop at a time).
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
        if not len(images):
            raise ValueError("no training images: check the data sources of the config")
        self.images = images  # arrays or a SliceStore: read (and copied) one crop at a time
        for i in range(len(images)):
            if len(images[i].shape) != 2:
                raise ValueError(f"training image {i} is not 2D: shape {tuple(images[i].shape)}")
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
        patches = [self._patch(self._image(i), (hr_h, hr_w), g) for i in indices]
        hr = torch.stack(patches)[:, None]
        hr = self._intensity(hr, g)
        lr, noise = option.chain.degrade(hr, (lr_h, lr_w), g)
        if transpose:
            hr, lr, pair = hr.transpose(-2, -1), lr.transpose(-2, -1), pair[::-1]
        return {
            "hr": hr.contiguous(),
            "lr": lr.contiguous(),
            "scale": scale if pair[0] == pair[1] else pair,
            "acquisition": option.chain.acquisition,
            "noise": noise.float(),
        }

    def __iter__(self):
        step = 0
        while True:
            yield self.batch(step)
            step += 1

    def _image(self, i: int) -> torch.Tensor:
        image = self.images[i]
        if isinstance(image, np.ndarray) and image.dtype == np.float32 and image.flags.writeable:
            return torch.from_numpy(np.ascontiguousarray(image))  # no copy
        return torch.from_numpy(np.array(image, dtype=np.float32))  # e.g. a read-only map

    def _patch(
        self, image: torch.Tensor, shape: tuple[int, int], g: torch.Generator
    ) -> torch.Tensor:
        """A random ``shape`` patch: a square of the longer side (zoomed out, see
        :class:`Augment`), flipped and rotated, then its top-left ``shape`` (so rotations
        never change the patch's shape)."""
        aug = self.augment
        side = crop = max(shape)
        if aug.zoom and torch.rand(1, generator=g) < aug.zoom_p:
            lo, hi = np.log(aug.zoom[0]), np.log(aug.zoom[1])
            crop = round(side * float(np.exp(lo + (hi - lo) * float(torch.rand(1, generator=g)))))
        h, w = image.shape
        if h < crop or w < crop:  # small images: zero padding (MRI background is zero)
            pad = (0, max(0, crop - w), 0, max(0, crop - h))
            image = torch.nn.functional.pad(image, pad)
            h, w = image.shape
        top = int(torch.randint(h - crop + 1, (1,), generator=g))
        left = int(torch.randint(w - crop + 1, (1,), generator=g))
        patch = image[top : top + crop, left : left + crop]
        if crop != side:  # a coarser matrix of the same field of view
            patch = fourier_resize(patch, (side, side), "mirror").clamp_(0.0, 1.0)
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
        if aug.contrast_p:
            hr = random_contrast(hr, aug.contrast_p, g)
        if aug.gamma:
            lo, hi = np.log(aug.gamma[0]), np.log(aug.gamma[1])
            gamma = torch.exp(lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=g))
            hr = hr.clamp(0.0, 1.0) ** gamma
        if aug.gain:
            lo, hi = aug.gain
            hr = hr * (lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=g))
        return hr


class PatchBatches(torch.utils.data.Dataset):
    """Batches ``first .. stop - 1`` of ``sampler`` as a map-style dataset: item ``k`` is
    ``sampler.batch(first + k)`` (a pure function of the step: any worker may make it)."""

    def __init__(self, sampler: PatchSampler, first: int, stop: int):
        self.sampler, self.first, self.stop = sampler, first, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.first)

    def __getitem__(self, k: int) -> dict:
        if not 0 <= k < len(self):
            raise IndexError(k)
        return self.sampler.batch(self.first + k)


def batch_loader(
    sampler: PatchSampler, first: int, stop: int, workers: int = 0, pin_memory: bool = False
) -> torch.utils.data.DataLoader:
    """The batches of steps ``first .. stop - 1``, in order, made by ``workers`` processes
    (0: by the calling process), each up to two batches ahead.

    The loader has its own seed generator, so creating it leaves the global RNG (saved in
    training states) untouched; each batch seeds itself from its step.
    """
    return torch.utils.data.DataLoader(
        PatchBatches(sampler, first, stop),
        batch_size=None,  # items are whole batches
        shuffle=False,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        pin_memory=pin_memory,
        collate_fn=_as_made,
        generator=torch.Generator().manual_seed(sampler.seed),
    )


def _as_made(batch: dict) -> dict:
    """The batch unchanged (the default would turn an ``(s_h, s_w)`` scale into a list)."""
    return batch
