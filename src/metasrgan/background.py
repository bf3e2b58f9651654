"""Exact background skipping: a slice costs what its anatomy costs.

Skull-stripped scans (BraTS) are mostly an exactly constant background.  Every layer of the
generator is local: its value at a pixel depends only on the input within the layer's
cumulative receptive radius ``rho`` and, within ``rho`` of the image border, on where the
border is (zero padding).  So wherever that neighbourhood holds only the background value
``c``, the layer's value is the one it has on an image filled with ``c``.  Such an image's
maps are computed once per ``c`` on a small ``S x S`` image (``S = 2 R + 1``, ``R`` the
receptive radius: every border configuration of a larger image occurs in it) and read by
index for any slice size; each layer is then computed only on the box of pixels within its
own radius of the anatomy (the box grows by each convolution's reach), with the background
maps around it; the Meta-Upscale the same way, and the global skip image (bicubic or sinc)
of the whole slice once, as :mod:`metasrgan.tiling` does.

The result equals the dense forward pass up to float rounding (a convolution on a smaller
box may sum in another order); tests compare the two on real skull-stripped slices.  Slices
where the anatomy's box reaches most of the image (noisy backgrounds) take the dense path,
so they cost what they did.  Supported: :class:`~metasrgan.models.MetaSRGAN` with the
SRResNet feature extractor in eval mode (other models: ``None``, the caller runs them dense).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metasrgan.scale import Scale2d

DENSE_ABOVE = 0.85
"""Run dense when the anatomy box grown by the receptive radius covers more of the slice."""


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

    def inside(self, outer: Box) -> tuple[slice, slice]:
        """Where this box lies in a tensor that covers ``outer``."""
        return (slice(self.r0 - outer.r0, self.r1 - outer.r0),
                slice(self.c0 - outer.c0, self.c1 - outer.c0))  # fmt: skip

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
    """One pass through the feature extractor, dense (``record``: keep every map that is
    read around a box) or on boxes (``replay``: read those maps by index)."""

    def __init__(self, height: int, width: int, maps: list | None, index=None,
                 memory_format=torch.contiguous_format):  # fmt: skip
        self.height, self.width = height, width
        self.memory_format = memory_format
        self.record = maps is None
        self.maps = [] if maps is None else maps
        self.index = index  # (rows, cols) gathers from the small image's maps
        self.n = 0

    def around(self, t: torch.Tensor, box: Box, outer: Box) -> torch.Tensor:
        """``t`` (the values on ``box``) on the larger ``outer``, background around it."""
        if self.record:
            self.maps.append(t)
            return t
        bg = self.maps[self.n]
        self.n += 1
        if box == outer:
            return t
        rows, cols = self.index
        out = bg[:, :, rows[outer.r0 : outer.r1]][:, :, :, cols[outer.c0 : outer.c1]]
        out = out.expand(t.shape[0], -1, -1, -1).contiguous(memory_format=self.memory_format)
        r, k = box.inside(outer)
        out[:, :, r, k] = t
        return out

    def conv(self, conv: nn.Conv2d, t: torch.Tensor, box: Box) -> tuple[torch.Tensor, Box]:
        k = conv.kernel_size[0] // 2
        target = box.grow(k, self.height, self.width)
        window = target.grow(k, self.height, self.width)
        y = conv(self.around(t, box, window))
        r, c = target.inside(window)
        return y[:, :, r, c], target

    def add(self, a, a_box: Box, b, b_box: Box) -> tuple[torch.Tensor, Box]:
        """``a + b``; ``a_box`` lies inside ``b_box`` (the residual paths only grow)."""
        return self.around(a, a_box, b_box) + b, b_box

    def features(self, model: nn.Module, x: torch.Tensor, box: Box) -> tuple[torch.Tensor, Box]:
        """``model.extract_features`` on ``box`` (``x``: the input on that box)."""
        net = model.features
        t, b = self.conv(net.head[0], model.normalization.encode(x), box)
        head, head_box = net.head[1](t), b
        t = head
        for block in net.body:
            conv1, norm1, act, conv2, norm2 = block.body
            h, hb = self.conv(conv1, t, b)
            h, hb = self.conv(conv2, act(norm1(h)), hb)
            t, b = self.add(t, b, norm2(h), hb)
        e, eb = self.conv(net.body_end[0], t, b)
        return self.add(head, head_box, net.body_end[1](e), eb)


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

    def __init__(self, model: nn.Module, scale, acquisition: str | None = None):
        from metasrgan.tiling import receptive_radius

        self.model = model
        self.scale = Scale2d.of(scale)
        self.acquisition = acquisition
        self.radius = receptive_radius(model)
        weight = next((m.weight for m in model.modules()
                       if isinstance(m, nn.Conv2d) and m.in_channels > 1), None)  # fmt: skip
        cl = weight is not None and not weight.is_contiguous()
        self.memory_format = torch.channels_last if cl else torch.contiguous_format
        self._small: dict[float, list] = {}
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
        found = anatomy_box(x)
        if found is None:
            return None
        value, box = found
        grown = box.grow(self.radius, height, width) if box is not None else None
        if grown is not None and grown.area > DENSE_ABOVE * height * width:
            return None
        self.skipped_pixels += x.shape[0] * (height * width - (grown.area if grown else 0))
        rule = self.scale.out_shape(height, width)
        residual = self._background_residual(value, x, rule)
        residual = residual.expand(x.shape[0], -1, -1, -1).clone()
        if box is not None:
            self._paste_residual(x, box, value, residual)
        from metasrgan.tiling import finish_residual

        return finish_residual(self.model, x, residual, rule, self.acquisition)

    def _maps(self, value: float, ref: torch.Tensor) -> list:
        """The feature extractor's maps on the small constant image (recorded once)."""
        if value not in self._small:
            side = 2 * self.radius + 1
            const = ref.new_full((1, ref.shape[1], side, side), value)
            walk = _Walk(side, side, None, memory_format=self.memory_format)
            feats, _ = walk.features(self.model, const, Box(0, side, 0, side))
            self._small[value] = [*walk.maps, feats]
        return self._small[value]

    def _walk(self, value: float, x: torch.Tensor) -> _Walk:
        height, width = x.shape[-2:]
        m = self.radius
        index = (_fold(height, m, x.device), _fold(width, m, x.device))
        return _Walk(height, width, self._maps(value, x), index, self.memory_format)

    def _background_residual(self, value: float, x: torch.Tensor, rule) -> torch.Tensor:
        """The residual of a whole constant slice of this size (once per value and size)."""
        height, width = x.shape[-2:]
        key = (value, height, width)
        if key not in self._residual:
            walk = self._walk(value, x)
            small = self._maps(value, x)[-1]
            rows, cols = walk.index
            feats = small[:, :, rows][:, :, :, cols]
            self._residual[key] = self.model.residual(feats, self.scale, rule, self.acquisition)
        return self._residual[key]

    def _paste_residual(self, x: torch.Tensor, box: Box, value: float, out: torch.Tensor):
        """Compute the residual where it differs from the background's and write it in."""
        height, width = x.shape[-2:]
        sh, sw = self.scale.h, self.scale.w
        walk = self._walk(value, x)
        # features on the box, then the upscaler on LR pixels reading anything non-background
        feats, fbox = walk.features(self.model, x[:, :, box.r0 : box.r1, box.c0 : box.c1], box)
        need = fbox.grow(1, height, width)
        need = Box(need.r0 // sh.q * sh.q, min(height, -(-need.r1 // sh.q) * sh.q),
                   need.c0 // sw.q * sw.q, min(width, -(-need.c1 // sw.q) * sw.q))  # fmt: skip
        window = need.grow(1, height, width)
        window = Box(window.r0 // sh.q * sh.q, window.r1, window.c0 // sw.q * sw.q, window.c1)
        f = walk.around(feats, fbox, window)  # the last recorded map: the features'

        shape = self.scale.out_shape(window.r1 - window.r0, window.c1 - window.c0)
        y = self.model.residual(f, self.scale, shape, self.acquisition)
        o_r0, o_c0 = window.r0 * sh.p // sh.q, window.c0 * sw.p // sw.q
        r0, c0 = need.r0 * sh.p // sh.q, need.c0 * sw.p // sw.q
        n_out_h, n_out_w = out.shape[-2:]
        r1 = n_out_h if need.r1 == height else need.r1 * sh.p // sh.q
        c1 = n_out_w if need.c1 == width else need.c1 * sw.p // sw.q
        out[:, :, r0:r1, c0:c1] = y[:, :, r0 - o_r0 : r1 - o_r0, c0 - o_c0 : c1 - o_c0]
