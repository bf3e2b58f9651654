"""Exact background skipping: a slice costs what its anatomy costs.

Skull-stripped scans (BraTS) are mostly an exactly constant background.  Every layer of the
generator is local: its value at a pixel depends only on the input within the layer's
cumulative receptive radius and, near the image border, on where the border is (zero
padding).  So wherever that neighbourhood holds only the background value ``c``, the layer's
value is the one it has on an image filled with ``c``.  That image's maps are computed once
per ``c`` on a small ``S x S`` image (``S = 2 R + 1``, ``R`` the receptive radius: every
border configuration of a larger image occurs in it) and spread, once per slice size, to
full-size maps by index.

A slice is then computed on windows that grow with the network's reach: the features of a
layer differ from the background's only within the anatomy's box grown by the reach of the
layers up to it, so the head and first residual block run on the box grown by 8 pixels,
each later block on a box 1-2 pixels wider, and the last convolution on the window the
Meta-Upscale needs (the box grown by ``R + 1``, aligned to the scale's period).  That is
12% fewer FLOPs than one window of the last size for every layer on the BraTS-like volume
of ``benchmarks/bench_volume.py`` (37% of the dense FLOPs instead of 42%).  The price is
memory: six window shapes a slice instead of one took that volume's peak RSS from 0.73-0.83
to 1.25-1.32 GiB, levelling off once the shapes repeat (oneDNN's primitive cache holds 0.2
GiB of it: 1.01 GiB with ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0``; the heap the rest).
Windows rounded to multiples of 8 pixels held 1.04 GiB but did 8% more FLOPs.  Each
convolution's outermost ``k`` pixels (``k`` its reach), wrong because the convolution
zero-pads there, lie beyond the anatomy's reach at that layer and are overwritten with the
background map; between blocks the maps are widened with the recorded background around
them, so every layer is exact on its window.  The Meta-Upscale runs on the last window, its
output is written into the constant slice's output, and the global skip image (bicubic or
sinc) of the whole slice is added once, as in :mod:`metasrgan.tiling`.

The result equals the dense forward pass up to float rounding (a convolution on a smaller
image may sum in another order); tests compare the two on real skull-stripped slices.
Slices whose window covers most of the image (noisy backgrounds) take the dense path, so
they cost what they did.  Supported: :class:`~metasrgan.models.MetaSRGAN` with the SRResNet
feature extractor in eval mode (other models get ``None``: the caller runs them dense).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from metasrgan.scale import Scale2d

DENSE_ABOVE = 0.85
"""Run dense when the window (the anatomy's box grown by ``R + 1``) covers more of the slice."""

MAPS_MAX_BYTES = 384 << 20
"""Largest full-size background maps kept (19 maps of 64 channels with 5 blocks: slices up
to ~290x290); larger slices run dense."""


@dataclass(frozen=True)
class Box:
    """Rows ``[r0, r1)`` and columns ``[c0, c1)`` of a slice."""

    r0: int
    r1: int
    c0: int
    c1: int

    def grow(self, k: int, height: int, width: int) -> Box:
        return Box(max(0, self.r0 - k), min(height, self.r1 + k),
                   max(0, self.c0 - k), min(width, self.c1 + k))  # fmt: skip

    @property
    def area(self) -> int:
        return (self.r1 - self.r0) * (self.c1 - self.c0)


def anatomy_box(x: torch.Tensor) -> tuple[float, Box | None] | None:
    """The background value (the corner pixel, shared by every image of the batch) and the
    box of pixels that differ from it (None: all background); None without one value."""
    c = x[:, :, 0, 0]
    if not bool((c == c[0, 0]).all()):
        return None
    value = float(c[0, 0])
    rows = (x != value).flatten(0, 1).any(dim=0)  # [H, W]
    if not bool(rows.any()):
        return value, None
    r = torch.nonzero(rows.any(dim=1)).flatten()
    k = torch.nonzero(rows.any(dim=0)).flatten()
    return value, Box(int(r[0]), int(r[-1]) + 1, int(k[0]), int(k[-1]) + 1)


def supports(model: nn.Module) -> bool:
    from metasrgan.models.blocks import ResidualBlock, SRResNetFeatures
    from metasrgan.models.meta_srgan import MetaSRGAN

    return (
        isinstance(model, MetaSRGAN)
        and isinstance(model.features, SRResNetFeatures)
        and all(isinstance(b, ResidualBlock) for b in model.features.body)
        and not model.training
    )


class _Walk:
    """The feature extractor dense on the small constant image (``record``: keep each
    convolution's raw output and the maps between blocks), or exact on windows of a larger
    slice (``replay``) that grow block by block: each convolution's border ring, where it
    zero-padded inside the slice, is reset from the recorded maps, and between blocks the
    maps are widened to the next window with the recorded background around them."""

    def __init__(
        self, windows: list[Box], size: tuple[int, int], maps=None, states=None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):  # fmt: skip
        self.windows, self.size = windows, size  # one per stage: head + block 0, blocks, end
        self.memory_format = memory_format  # of the widened maps (the model's)
        self.record = maps is None
        self.maps = [] if maps is None else maps  # replay: full-size [1, C, H, W] maps
        self.states = {} if states is None else states  # the same between blocks, by index
        self.n = self.stage = 0

    @property
    def window(self) -> Box:
        return self.windows[self.stage]

    def conv(self, conv: nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
        y = conv(t)
        if self.record:  # a copy: activations overwrite fresh conv outputs in place
            self.maps.append(y.clone())
            return y
        w, (height, width) = self.window, self.size
        bg = self.maps[self.n][:, :, w.r0 : w.r1, w.c0 : w.c1]
        self.n += 1
        k = conv.kernel_size[0] // 2
        if w.r0 > 0:
            y[:, :, :k] = bg[:, :, :k]
        if w.r1 < height:
            y[:, :, -k:] = bg[:, :, -k:]
        if w.c0 > 0:
            y[:, :, :, :k] = bg[:, :, :, :k]
        if w.c1 < width:
            y[:, :, :, -k:] = bg[:, :, :, -k:]
        return y

    def widen(self, t: torch.Tensor, state: int, stage: int, source: int | None = None):
        """``t`` (recorded state ``state``, on stage ``source``'s window, by default the
        current one) on stage ``stage``'s, which becomes the current one."""
        if self.record:
            self.states[state] = t.clone()
            return t
        old = self.window if source is None else self.windows[source]
        new = self.windows[stage]
        self.stage = stage
        if new == old:
            return t
        # one write of the new window: ``t`` inside, the background's four strips around it
        bg = self.states[state]
        shape = (t.shape[0], t.shape[1], new.r1 - new.r0, new.c1 - new.c0)
        out = torch.empty(shape, dtype=t.dtype, device=t.device, memory_format=self.memory_format)
        top, left = old.r0 - new.r0, old.c0 - new.c0
        bottom, right = top + old.r1 - old.r0, left + old.c1 - old.c0
        out[:, :, top:bottom, left:right] = t
        out[:, :, :top] = bg[:, :, new.r0 : old.r0, new.c0 : new.c1]
        out[:, :, bottom:] = bg[:, :, old.r1 : new.r1, new.c0 : new.c1]
        out[:, :, top:bottom, :left] = bg[:, :, old.r0 : old.r1, new.c0 : old.c0]
        out[:, :, top:bottom, right:] = bg[:, :, old.r0 : old.r1, old.c1 : new.c1]
        return out

    def features(self, model: nn.Module, x: torch.Tensor, noise: float | None) -> torch.Tensor:
        """``model.extract_features(x, noise)`` (``x``: the input on the first window)."""
        net = model.features
        head = self.conv(net.head[0], model.normalization.encode(x))
        if getattr(model, "noise_input", False):
            head = head + model.noise_bias(x, noise)
        head = net.head[1](head)
        t = head
        for j, block in enumerate(net.body):
            if j:
                t = self.widen(t, j, j)
            conv1, norm1, act, conv2, norm2 = block.body
            h = self.conv(conv2, act(norm1(self.conv(conv1, t))))
            t = norm2(h).add_(t)  # in place on fresh maps, as the dense blocks do
        last = len(net.body)
        t = self.widen(t, last, last)
        head = self.widen(head, 0, last, source=0)
        return net.body_end[1](self.conv(net.body_end[0], t)).add_(head)


def stage_reaches(model: nn.Module) -> list[int]:
    """Per stage of :class:`_Walk` (head and block 0, each later block, the last conv), how
    far beyond the anatomy its window must reach: the stage's largest cumulative reach plus
    the kernel reach of the convolution at it (the border ring it resets must be beyond
    the anatomy's reach), never less than the stage before."""
    net = model.features
    convs = [[net.head[0], *_block_convs(net.body[0])],
             *[_block_convs(b) for b in net.body[1:]], [net.body_end[0]]]  # fmt: skip
    reaches, total = [], 0
    for stage in convs:
        need = 0
        for conv in stage:
            k = conv.kernel_size[0] // 2
            total += k
            need = max(need, total + k)
        reaches.append(max(need, reaches[-1] if reaches else 0))
    return reaches


def _block_convs(block: nn.Module) -> list[nn.Conv2d]:
    return [block.body[0], block.body[3]]


def _fold(n: int, m: int, device) -> torch.Tensor:
    """Index into the ``2m + 1`` image for each of ``n >= 2m + 1`` pixels: the same distance
    to the nearest border up to ``m``."""
    i = torch.arange(n, device=device)
    return torch.where(i < m, i, torch.where(i >= n - m, i - (n - (2 * m + 1)), m))


class BackgroundSkip:
    """Upscale batches of slices computing only what touches anatomy (see the module).

    One object per volume pass: it keeps the background maps of each background value it
    meets (a few MiB) for the slices that follow.
    """

    def __init__(
        self,
        model: nn.Module,
        scale,
        acquisition: str | None = None,
        noise: float | None = None,
        gains: tuple[float, float] | None = None,
    ):
        from metasrgan.tiling import receptive_radius

        self.model = model
        self.scale = Scale2d.of(scale)
        self.acquisition = acquisition
        self.noise = noise  # one level for the pass (noise-aware models run dense without)
        self.gains = gains  # the same for self-calibrated models (None: fitted per batch)
        self.radius = receptive_radius(model)
        weight = next((m.weight for m in model.modules()
                       if isinstance(m, nn.Conv2d) and m.in_channels > 1), None)  # fmt: skip
        cl = weight is not None and not weight.is_contiguous()
        self.memory_format = torch.channels_last if cl else torch.contiguous_format
        self._small: dict[float, list] = {}
        self._full: tuple[tuple, list] | None = None  # the latest (value, H, W) only
        self._residual: dict[tuple, torch.Tensor] = {}
        self.skipped_pixels = 0
        self.pixels = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        """The model's output for ``x`` ``[B, C, H, W]`` (size rule), or None when this
        batch is better run dense (no single background value, anatomy almost everywhere,
        slices smaller than the small image, or a model this does not support)."""
        height, width = x.shape[-2:]
        side = 2 * self.radius + 1
        self.pixels += x.shape[0] * height * width
        if min(height, width) < side or not supports(self.model):
            return None
        if getattr(self.model, "noise_input", False) and self.noise is None:
            return None
        n_maps = 3 * len(self.model.features.body) + 4  # convolutions, features, states
        maps_bytes = n_maps * 4 * self.model.features.head[0].out_channels * height * width
        if maps_bytes > MAPS_MAX_BYTES:
            return None
        found = anatomy_box(x)
        if found is None:
            return None
        value, box = found
        need = window = None
        if box is not None:
            need, window = self._boxes(box, height, width)
            if window.area > DENSE_ABOVE * height * width:
                return None
        self.skipped_pixels += x.shape[0] * (height * width - (window.area if window else 0))
        rule = self.scale.out_shape(height, width)
        residual = self._background_residual(value, x, rule)
        residual = residual.expand(x.shape[0], -1, -1, -1).clone()
        if box is not None:
            self._paste_residual(x, box, need, window, value, residual)
        return self.model.combine(x, residual, rule, self.acquisition, self.noise, self.gains)

    def _boxes(self, box: Box, height: int, width: int) -> tuple[Box, Box]:
        """LR pixels whose outputs differ from the background's (the anatomy's box grown by
        ``R``, ends on multiples of ``q``), and the window computing them (one more pixel
        for the upscaler's neighbourhood, starting on a multiple of ``q``: same phases)."""
        sh, sw = self.scale.h, self.scale.w
        need = box.grow(self.radius, height, width)
        need = Box(need.r0 // sh.q * sh.q, min(height, -(-need.r1 // sh.q) * sh.q),
                   need.c0 // sw.q * sw.q, min(width, -(-need.c1 // sw.q) * sw.q))  # fmt: skip
        window = need.grow(1, height, width)
        window = Box(window.r0 // sh.q * sh.q, window.r1, window.c0 // sw.q * sw.q, window.c1)
        return need, window

    @functools.cached_property
    def reaches(self) -> list[int]:
        """:func:`stage_reaches` of the model (first asked once :func:`supports` holds)."""
        return stage_reaches(self.model)

    def _stage_windows(self, box: Box, window: Box, height: int, width: int) -> list[Box]:
        """The windows of :class:`_Walk`'s stages: the anatomy's box grown by each stage's
        reach, the last one ``window`` (which holds them all)."""
        grown = [box.grow(r, height, width) for r in self.reaches]
        return [*grown[:-1], window]

    def _maps(self, value: float, ref: torch.Tensor) -> tuple[list, dict]:
        """Each convolution's raw output on the small constant image, then the features; and
        the maps between blocks (recorded once per value)."""
        if value not in self._small:
            side = 2 * self.radius + 1
            const = ref.new_full((1, ref.shape[1], side, side), value)
            whole = Box(0, side, 0, side)
            walk = _Walk([whole] * (len(self.model.features.body) + 1), (side, side))
            feats = walk.features(self.model, const, self.noise)
            self._small[value] = ([*walk.maps, feats], walk.states)
        return self._small[value]

    def _full_maps(self, value: float, x: torch.Tensor) -> tuple[list, dict]:
        """The small image's maps at this slice's size (each pixel reads the small-image
        pixel at the same distances from the borders, up to the receptive radius)."""
        key = (value, *x.shape[-2:])
        if self._full is None or self._full[0] != key:
            self._full = None  # free the previous size's maps first
            m = self.radius
            rows, cols = (_fold(n, m, x.device) for n in x.shape[-2:])

            def full(t: torch.Tensor) -> torch.Tensor:
                return t[:, :, rows][:, :, :, cols].contiguous(memory_format=self.memory_format)

            maps, states = self._maps(value, x)
            self._full = (key, [full(t) for t in maps], {k: full(t) for k, t in states.items()})
        return self._full[1], self._full[2]

    def _background_residual(self, value: float, x: torch.Tensor, rule) -> torch.Tensor:
        """The residual of a whole constant slice of this size (once per value and size)."""
        key = (value, *x.shape[-2:])
        if key not in self._residual:
            feats = self._full_maps(value, x)[0][-1]
            self._residual[key] = self.model.residual(feats, self.scale, rule, self.acquisition)
        return self._residual[key]

    def _paste_residual(
        self, x, box: Box, need: Box, window: Box, value: float, out: torch.Tensor
    ) -> None:
        """Compute the residual on ``window`` (the features on windows growing from ``box``)
        and write its ``need`` part into ``out``."""
        height, width = x.shape[-2:]
        sh, sw = self.scale.h, self.scale.w
        maps, states = self._full_maps(value, x)
        windows = self._stage_windows(box, window, height, width)
        walk = _Walk(windows, (height, width), maps[:-1], states, self.memory_format)
        first = windows[0]
        crop = x[:, :, first.r0 : first.r1, first.c0 : first.c1]
        crop = crop.contiguous(memory_format=self.memory_format)
        feats = walk.features(self.model, crop, self.noise)
        shape = self.scale.out_shape(window.r1 - window.r0, window.c1 - window.c0)
        y = self.model.residual(feats, self.scale, shape, self.acquisition)
        o_r0, o_c0 = window.r0 * sh.p // sh.q, window.c0 * sw.p // sw.q
        r0, c0 = need.r0 * sh.p // sh.q, need.c0 * sw.p // sw.q
        n_out_h, n_out_w = out.shape[-2:]
        r1 = n_out_h if need.r1 == height else need.r1 * sh.p // sh.q
        c1 = n_out_w if need.c1 == width else need.c1 * sw.p // sw.q
        out[:, :, r0:r1, c0:c1] = y[:, :, r0 - o_r0 : r1 - o_r0, c0 - o_c0 : c1 - o_c0]
