"""Self-supervised adaptation to one scan before it is upscaled (``--adapt STEPS``).

The network learned its anatomy from two human T1 templates; a scan of another species,
contrast or scanner asks it for details it never saw.  The scan itself holds the missing
examples, as ZSSR (Shocher et al. 2018) and, for thick slices, SMORE and ECLARE (Zhao et
al. 2020; Remedios et al. 2025) use it, but those learn from scratch.  Here the trained
network is fine-tuned for a few hundred updates on pairs made from the scan alone (no
high-resolution image is needed):

- a **through-plane** pass (thick slices, factor ``s``): the slices of the two fine axes,
  thinned along one of them by the ``thick`` degradation at ``(s, 1)``: the very
  degradation the pass undoes, on the scan's own anatomy;
- an **in-plane** pass (factor ``s``): the slices themselves degraded again by their
  acquisition's degradation (``kspace``: a smaller matrix) at ``s``: the scan's anatomy one
  pixel scale coarser (ZSSR's self-similarity across scales).

Measured on two unseen volumes (``benchmarks/README.md``, "Adaptation"), 200 updates
gained 0.50-1.98 dB in-plane (k-space, x1.5-x3) and up to 0.37 dB through-plane (level at
x2 and x5).  The adapted network is a copy; the one given is not changed.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metasrgan.api.options import ADAPT_AUTO
from metasrgan.data.patches import exact_patch_sizes
from metasrgan.degradations import make_chain

MIN_INPUT_PIXELS = 100
"""Pairs whose degraded input would have fewer pixels than this are not made: the slices
are too small for that factor, and the task is left out with a warning.  Measured on two
unseen volumes: x4 in-plane of 32x36 and 32x24 slices (8x8 and 6x6 inputs) lost 0.56 and
0.03 dB, while 10x10 (x3, 30-pixel patches) gained 0.51 dB and thick slices at x6 (8x48)
0.36 dB; a rule from those few cases, not a law."""

WHOLE_SLICE = 128
"""k-space pairs use whole slices up to this many pixels per side, not patches: truncating
a patch's k-space rings at its cut edges, which a scan's own slices (dark background) do
not.  Measured on the INIA19 volume at x2: 64-pixel patches +1.18 dB, 48-pixel +0.54."""

NOISE_LIMIT = 0.0125
"""Scans whose estimated noise level (of the [0, 1] range) exceeds this are not adapted to:
the pairs' targets are the scan itself, noise included, so adapting teaches the network to
keep the noise it was trained to remove.  Measured on the acquisition benchmark's unseen
scans at x2 (k-space truncation plus Rician noise, 200 updates; gain over the best classical
method, as shipped -> adapted): sigma 0.5% +0.50 -> +0.83 dB, 1% +0.44 -> +0.76, 1.5%
+0.55 -> +0.73 (the EPI already lost 0.10 there), 2% +0.75 -> +0.69, 3% +1.51 -> +0.63
(bicubic plus 3%: +1.90 -> +1.07).  The noise-free scans' own levels read 0.3-0.4%."""

FOREGROUND = 0.05
"""Pixels above this (of the [0, 1] range) are anatomy; slices are drawn by how much of it
they show, so empty slices of the field of view teach nothing."""


PAIR_SCALE_MAX = Fraction(2)
"""In-plane passes beyond x2 learn from pairs at x2 (per axis): their inputs keep more of
the scan, and the network, one for every scale, carries what it learns to the pass's own.
Measured, 200 updates, gain over the best classical method as pairs at the pass's scale ->
at x2: k-space, unseen scans (acquisition benchmark) x2.8 +0.62 -> +0.88 dB; the validation
slabs x2.4 +1.67 -> +1.79, x3.2 +1.05 -> +1.52 (the model as shipped: +1.86 and +1.57, so
adapting to the anatomy it was trained on still costs a little).  Bicubic, x1.2-x4 mean:
unseen +1.61 -> +1.63, validation slabs +2.92 -> +3.02 (x4 +2.07 -> +2.45; as shipped
+2.85).  Slices too small for pairs at the pass's own scale are still not adapted to:
allowing x2 pairs there gained +0.09-0.24 dB on the unseen scans at x3.6-x4 but lost 0.23
on the validation slabs at x4 (k-space)."""


@dataclass(frozen=True)
class Task:
    """One kind of pair: the scale the network is called with, its acquisition, and the
    degradation that makes the pair's input (a preset of :mod:`metasrgan.degradations`).
    ``target``: the pass's own scale when the pairs use a smaller one
    (:data:`PAIR_SCALE_MAX`); the slices must be large enough for it too."""

    scale: tuple[Fraction, Fraction]
    acquisition: str | None
    degradation: str
    target: tuple[Fraction, Fraction] | None = None


AUTO_STEPS = 200
"""Updates of ``--adapt auto`` (the default).  It adapts in-plane k-space passes only (of
inputs neither noisy nor too small, as any run): measured on the unseen scans of the
acquisition benchmark (clean k-space, x1.2-x4, gain over zero-filled sinc), the model as
it is +0.61 dB, adapted +1.05; noisy input is not adapted to (:data:`NOISE_LIMIT`), and
thick slices (up to +0.37 dB) and resized images already gain more than 1 dB without."""

AUTO_DEGRADATIONS = ("kspace",)
"""The pairs ``--adapt auto`` makes: the passes of other acquisitions use the model as it is."""


@dataclass(frozen=True)
class AdaptOptions:
    steps: int = 200
    lr: float = 5.0e-5
    """Adam's step size: low, the network is already trained (2e-5 to 5e-5 measured)."""
    batch: int = 8
    patch: int = 48
    """Side of the high-resolution patches of the local degradations (thick slices,
    resizing; at most the slices' smaller side); k-space pairs: :data:`WHOLE_SLICE`."""
    seed: int = 0
    warn: bool = True
    """Warn when the input is too noisy or its slices too small (quiet for ``auto``, which
    the user did not ask for)."""


def adaptation(
    adapt: int | str, passes, model: nn.Module, acquisition: str | None
) -> tuple[AdaptOptions, list[Task]]:
    """The options and tasks of an ``--adapt`` setting for the 2D passes ``[(scale pair,
    through_plane), ...]`` (:func:`tasks_for`): ``"auto"`` keeps the tasks of
    :data:`AUTO_DEGRADATIONS` for :data:`AUTO_STEPS` updates, quietly; a number, every task
    for that many updates."""
    tasks = tasks_for(passes, model, acquisition)
    if adapt == ADAPT_AUTO:
        kept = [t for t in tasks if t.degradation in AUTO_DEGRADATIONS]
        return AdaptOptions(steps=AUTO_STEPS, warn=False), kept
    return AdaptOptions(steps=int(adapt)), tasks


def tasks_for(passes, model: nn.Module, acquisition: str | None) -> list[Task]:
    """The pairs that teach the 2D passes ``[(scale pair, through_plane), ...]``."""
    from metasrgan.inference import model_acquisition

    tasks = []
    for pair, through in passes:
        sh, sw = (Fraction(f) for f in pair)
        acq = model_acquisition(model, acquisition, through_plane=through)
        if through:  # the thick axis comes first: scales are (s, 1)
            tasks.append(Task((max(sh, sw), Fraction(1)), acq, "thick"))
        else:
            at = (min(sh, PAIR_SCALE_MAX), min(sw, PAIR_SCALE_MAX))
            kind = "kspace" if acq == "kspace" else "bicubic"
            tasks.append(Task(at, acq, kind, None if at == (sh, sw) else (sh, sw)))
    return tasks


def _draw_slices(weights: np.ndarray, n: int, g: torch.Generator) -> torch.Tensor:
    return torch.multinomial(torch.from_numpy(weights), n, replacement=True, generator=g)


def _patches(slices: torch.Tensor, index: torch.Tensor, shape, square: bool, g) -> torch.Tensor:
    """``[B, 1, h, w]`` random crops of ``slices[index]``, flipped, and transposed when
    square (so both fine axes are thinned)."""
    h, w = shape
    _, height, width = slices.shape
    top = int(torch.randint(height - h + 1, (1,), generator=g))
    left = int(torch.randint(width - w + 1, (1,), generator=g))
    batch = slices[index, top : top + h, left : left + w][:, None]
    if square and torch.rand(1, generator=g) < 0.5:
        batch = batch.transpose(-1, -2)
    for dim in (-1, -2):
        if torch.rand(1, generator=g) < 0.5:
            batch = batch.flip(dim)
    return batch.contiguous()


def adapt_model(
    model: nn.Module,
    slices: np.ndarray,
    tasks: list[Task],
    options: AdaptOptions = AdaptOptions(),
    progress: bool = False,
) -> nn.Module:
    """A copy of ``model`` fine-tuned on pairs made from ``slices`` ``[N, H, W]`` (the
    scan's slices of its two fine axes, in [0, 1] as the network sees them) for ``tasks``,
    in eval mode.  L1 loss, Adam; each update draws one task.

    Every fifth slice with anatomy is held out: fixed pairs made from them score the network
    before the first update and :data:`CHECKS` times during the run, and the best of those
    weights is returned (the given model's own when no update helped): adapting can
    overfit a few slices, and the scan's held-out pairs say so without any reference.
    Inputs with fewer than five slices of anatomy (2D images) keep the last weights; noisy
    inputs (:data:`NOISE_LIMIT`) are not adapted to: the given model is returned."""
    if options.steps < 1:
        return model
    device = next(model.parameters()).device
    images = torch.as_tensor(np.asarray(slices, dtype=np.float32)).to(device)
    options = dataclasses.replace(options, patch=min(options.patch, *images.shape[1:]))
    sides = [_sides(t, images.shape[1:], options.patch) for t in tasks]
    tasks = [t for t, s in zip(tasks, sides, strict=True) if _fits(t, s, options.warn)]
    shown = (images > FOREGROUND).float().mean((1, 2)).cpu().double().numpy()
    if not tasks or _too_noisy(model, images, shown, options.warn):
        return model
    weights = shown + 1e-3  # empty slices may still be drawn, rarely
    held = np.zeros(len(weights), dtype=bool)
    anatomy = np.flatnonzero(shown > 0.01)
    if len(anatomy) >= 5:
        held[anatomy[2::5]] = True
    chains = {t.degradation: make_chain(t.degradation) for t in tasks}
    g = torch.Generator().manual_seed(options.seed)
    train_w = np.where(held, 0.0, weights)
    checks = _held_out_pairs(images, np.where(held, weights, 0.0), tasks, chains, options)
    net = copy.deepcopy(model)
    with torch.inference_mode(False), torch.enable_grad():
        best_loss, best_state = _score(net, checks), None
        net.train().requires_grad_(True)
        opt = torch.optim.Adam(net.parameters(), lr=options.lr)
        bar = _bar(options.steps) if progress else None
        every = max(1, options.steps // CHECKS)
        for step in range(1, options.steps + 1):
            task = tasks[int(torch.randint(len(tasks), (1,), generator=g))]
            hr, lr = _pair(images, train_w, task, chains, options, g)
            sr = net(lr, task.scale, tuple(hr.shape[-2:]), acquisition=task.acquisition)
            loss = F.l1_loss(sr.float(), hr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % every == 0 or step == options.steps:
                held_loss = _score(net, checks)
                if held_loss < best_loss:
                    best_loss, best_state = held_loss, copy.deepcopy(net.state_dict())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(l1=f"{loss.item():.4f}", held_out=f"{best_loss:.4f}")
        if bar is not None:
            bar.close()
    if not checks:  # too few slices to hold any out (a 2D image): the last weights
        return net.eval().requires_grad_(False)
    if best_state is None:  # no update helped the held-out pairs
        return model
    net.load_state_dict(best_state)
    return net.eval().requires_grad_(False)


def scan_noise(model: nn.Module, images: torch.Tensor, shown: np.ndarray) -> float:
    """The median noise level of up to 32 slices of ``images`` ``[N, H, W]`` that show
    anatomy: the model's own estimate where it has one (as its passes use), else
    :func:`~metasrgan.models.blocks.classical_sigma`."""
    from metasrgan.inference import model_uses_noise
    from metasrgan.models.blocks import classical_sigma

    picks = np.flatnonzero(shown > 0.01)
    picks = picks if len(picks) else np.arange(len(images))
    picks = picks[
        np.unique(np.linspace(0, len(picks) - 1, min(len(picks), 32)).round().astype(int))
    ]
    estimate = model.noise_level if model_uses_noise(model) else classical_sigma
    with torch.no_grad():
        levels = torch.cat([estimate(images[i][None, None]) for i in picks])
    return float(levels.median())


def _too_noisy(
    model: nn.Module, images: torch.Tensor, shown: np.ndarray, warn: bool = True
) -> bool:
    """Whether the scan is too noisy to adapt to (:data:`NOISE_LIMIT`; a warning says so)."""
    sigma = scan_noise(model, images, shown)
    if sigma <= NOISE_LIMIT:
        return False
    if warn:
        warnings.warn(
            f"--adapt: the input's noise level is about {100 * sigma:.1f}% of its range "
            f"(above {100 * NOISE_LIMIT:g}%): adapting to it would teach the network to keep "
            "its noise; the model is used as it is",
            stacklevel=3,
        )
    return True


def _sides(task: Task, slice_hw, patch: int) -> tuple[int, int]:
    """The largest high-resolution patch ``task`` may use on slices of ``slice_hw``."""
    if task.degradation == "kspace":
        return min(WHOLE_SLICE, slice_hw[0]), min(WHOLE_SLICE, slice_hw[1])
    return patch, patch


def _patch_sizes(task: Task, sides: tuple[int, int], scale=None):
    """``((hr_h, lr_h), (hr_w, lr_w))``: exact pair sizes within ``sides`` at ``scale``
    (default: the task's pairs')."""
    scale = scale or task.scale
    return tuple(exact_patch_sizes(s, n) for s, n in zip(scale, sides, strict=True))


def _fits(task: Task, sides: tuple[int, int], warn: bool = True) -> bool:
    """Whether patches of ``sides`` make pairs for ``task`` at its pass's own scale (else
    a warning says so)."""
    side = min(sides)
    scale = task.target or task.scale
    try:
        (_, lr_h), (_, lr_w) = _patch_sizes(task, sides, scale)
        pixels = lr_h * lr_w
    except ValueError:  # the scale's numerator exceeds the slices
        pixels = 0
    if pixels >= MIN_INPUT_PIXELS:
        return True
    if not warn:
        return False
    factors = "x".join(f"{float(s):g}" for s in scale)
    warnings.warn(
        f"--adapt: slices of {side} pixels are too small to adapt to {factors} "
        f"({task.acquisition or 'resize'}): the pairs' inputs would have {pixels} pixels "
        f"(at least {MIN_INPUT_PIXELS}); that pass uses the model as it is",
        stacklevel=3,
    )
    return False


CHECKS = 4
"""How often during a run the held-out pairs score the network (besides before it)."""


def _pair(images, weights, task: Task, chains, options: AdaptOptions, g):
    """One batch of (high-resolution patches, their degraded inputs) for ``task``."""
    sides = _sides(task, images.shape[1:], options.patch)
    (hr_h, lr_h), (hr_w, lr_w) = _patch_sizes(task, sides)
    index = _draw_slices(weights, options.batch, g).to(images.device)
    hr = _patches(images, index, (hr_h, hr_w), hr_h == hr_w, g)
    return hr, chains[task.degradation](hr, (lr_h, lr_w), g)


def _held_out_pairs(images, weights, tasks, chains, options: AdaptOptions):
    """Fixed pairs of every task from the held-out slices (none when none is held out)."""
    if weights.sum() <= 0:
        return []
    g = torch.Generator().manual_seed(options.seed + 1)
    return [(task, *_pair(images, weights, task, chains, options, g)) for task in tasks
            for _ in range(2)]  # fmt: skip


@torch.no_grad()
def _score(net: nn.Module, checks) -> float:
    """Mean L1 of ``net`` (as trained: no calibration) on the held-out pairs."""
    if not checks:
        return float("inf")
    was = net.training
    net.train()
    loss = sum(F.l1_loss(net(lr, t.scale, tuple(hr.shape[-2:]), acquisition=t.acquisition)
                         .float(), hr).item() for t, hr, lr in checks) / len(checks)  # fmt: skip
    net.train(was)
    return loss


def _bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="adapting", unit="step", dynamic_ncols=True, mininterval=1.0)
