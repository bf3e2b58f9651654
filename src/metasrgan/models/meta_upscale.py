"""Meta-Upscale Module (Hu et al., Meta-SR, CVPR 2019): an upsampler for any real scale.

A weight prediction network maps each output pixel's position ``(off_h, off_w, 1/s)`` to the
576 weights (``out_channels x in_channels x 3 x 3``) applied to the 3x3 feature
neighbourhood of the input pixel it reads (see :mod:`metasrgan.scale` for the exact index
rule).  Two implementations compute the same function:

- :meth:`MetaUpscale.forward_reference`: per output pixel, as the original code does (a
  weight for every output pixel, memory ``O(H_out * W_out * 576)``).  Kept as the
  reference the fast path is tested against.
- :meth:`MetaUpscale.forward` (fast, exact, differentiable): output pixels
  ``(a + K*p_h, b + M*p_w)`` share the kernel of phase pair ``(a, b)``, so only ``p_h * p_w``
  kernels are predicted, and the work is done one of two ways (chosen per scale, see
  ``ROW_PHASE_MAX_WORK``): one row-strided convolution per input row offset with its row
  phases' kernels for all ``p_w`` column phases, then a column gather (``q_w`` times the
  ideal work in ``q_h`` large convolutions: every trained scale with ``q_w * s^2 <= 60``);
  or grouped by input offset, the ideal 576 multiply-adds per output pixel as three batched
  matmuls over gathered column taps (x2.7, x2.9, x3.1, x3.3, x3.6-x3.9 and long periods
  such as x2.37, q = 100).
  Memory ``O(output + 48 MiB)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metasrgan.scale import AxisScale, Scale2d

ROW_PHASE_MAX_WORK = 60
"""Row-offset convolutions (``q_w`` times the ideal work, ``q_h`` convolutions) when
``q_w * s_h * s_w`` is at most this, offset groups (ideal work after gathering the column
taps) above it.  Measured on this project's 2-core CPU (240x240x64, 2 threads, idle, best of
3): convolutions 10-47 ms against 33-64 ms up to 36, both 28-45 ms from 39 to 65, offset
groups 40-50 ms against 61-86 ms from 73 (x2.7, x2.9, x3.1, x3.3, x3.7, x3.9)."""

KERNELS_AT_ONCE = 4096
"""Phase pairs predicted in one call; longer periods predict one row group at a time."""

BATCHED_MAX_SLOTS = 8192
"""Largest ``q_h * q_w * ceil(s_h) * ceil(s_w)`` (kernel slots) done in one batched matmul."""

PATCH_CHUNK_BYTES = 48 << 20
"""Largest block of gathered 3x3 patches held at once by the offset-group path."""


class WeightPrediction(nn.Module):
    """FC (3 + conditions)->hidden, ReLU, FC hidden->out*in*k*k (the paper: 3->256->576).

    ``conditions`` extra inputs (0 in the paper) carry what the position does not: e.g. the
    acquisition type of the input and the anisotropy of the scale (see
    :class:`metasrgan.models.MetaSRGAN`).
    """

    def __init__(
        self,
        in_features: int,
        out_channels: int,
        kernel_size: int,
        hidden: int = 256,
        conditions: int = 0,
    ):
        super().__init__()
        self.conditions = conditions
        self.body = nn.Sequential(
            nn.Linear(3 + conditions, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_channels * in_features * kernel_size * kernel_size),
        )

    def forward(self, position: torch.Tensor) -> torch.Tensor:
        return self.body(position)


class MetaUpscale(nn.Module):
    """Upscale ``[B, C, H, W]`` features to ``[B, out_channels, H*s_h, W*s_w]``.

    Args:
        in_features: feature channels (64 in the paper).
        out_channels: image channels produced (1 for MRI).
        kernel_size: neighbourhood size (3).
        hidden: width of the weight prediction network (256).
        conditions: extra weight-prediction inputs, given to every call as ``condition``.
    """

    def __init__(
        self,
        in_features: int = 64,
        out_channels: int = 1,
        kernel_size: int = 3,
        hidden: int = 256,
        conditions: int = 0,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd")
        self.in_features = in_features
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.weight_prediction = WeightPrediction(
            in_features, out_channels, kernel_size, hidden, conditions
        )

    # ------------------------------------------------------------------ shared pieces
    def _phase_kernels(
        self,
        scale: Scale2d,
        ref: torch.Tensor,
        rows: slice = slice(None),
        cols: slice = slice(None),
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted kernels for every (row phase, column phase): ``[p_h, p_w, O, C, k, k]``
        (only the phases ``rows`` x ``cols`` when given: long periods need not all of them)."""
        off_h = torch.tensor(scale.h.phase_offsets()[rows], dtype=ref.dtype, device=ref.device)
        off_w = torch.tensor(scale.w.phase_offsets()[cols], dtype=ref.dtype, device=ref.device)
        ph, pw = off_h.numel(), off_w.numel()
        pos = torch.stack(
            [
                off_h[:, None].expand(ph, pw),
                off_w[None, :].expand(ph, pw),
                torch.full((ph, pw), scale.scale_feature(), dtype=ref.dtype, device=ref.device),
            ],
            dim=-1,
        ).reshape(ph * pw, 3)
        k = self.kernel_size
        weights = self.weight_prediction(self._with_condition(pos, condition))
        return weights.view(ph, pw, self.out_channels, self.in_features, k, k)

    def _with_condition(self, pos: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Positions ``[N, 3]`` followed by the call's condition vector (if the net has one)."""
        n_cond = self.weight_prediction.conditions
        if not n_cond:
            return pos
        if cond is None or cond.numel() != n_cond:
            raise ValueError(f"this upscaler needs a condition vector of {n_cond} values")
        return torch.cat([pos, cond.to(pos).view(1, -1).expand(pos.shape[0], -1)], dim=1)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_features:
            raise ValueError(
                f"expected features [B, {self.in_features}, H, W], got {tuple(x.shape)}"
            )

    # ------------------------------------------------------------------ fast path
    def forward(
        self,
        x: torch.Tensor,
        scale,
        out_shape: tuple[int, int] | None = None,
        condition: torch.Tensor | None = None,
    ):
        """Upscale features ``x`` by ``scale`` (a number, ``(s_h, s_w)`` or :class:`Scale2d`).

        ``out_shape`` overrides the output size rule for a target size (then the scale
        must be the exact ratio, see :func:`metasrgan.scale.scale_from_sizes`).
        ``condition``: the extra weight-prediction inputs (``conditions`` values).
        """
        self._check(x)
        scale = Scale2d.of(scale)
        out_shape = tuple(out_shape or scale.out_shape(*x.shape[-2:]))
        if scale.w.q * scale.h.value * scale.w.value <= ROW_PHASE_MAX_WORK:
            return self._forward_row_phases(x, scale, out_shape, condition)
        return self._forward_offset_batched(x, scale, out_shape, condition)

    def _forward_row_phases(
        self, x: torch.Tensor, scale: Scale2d, out_shape, condition=None
    ) -> torch.Tensor:
        """One row-strided convolution per input row offset ``r0`` (all row phases reading
        rows ``r0 + K*q_h``, each with all ``p_w`` column kernels), then a column gather:
        ``q_w`` times the ideal work in ``q_h`` large convolutions (one at x2, x3, x4)."""
        batch, _, height, width = x.shape
        h_out, w_out = out_shape
        sh, sw = scale.h, scale.w
        k, n_out = self.kernel_size, self.out_channels
        pad = k // 2
        n_kh = -(-h_out // sh.p)  # period blocks of rows
        extra_h = max((sh.q - 1) + (n_kh - 1) * sh.q + k - height - pad, pad)
        # integer row scales read every row once: the convolution pads (no padded copy:
        # 3 ms of a 240x240 slice's 10 ms here)
        direct = sh.q == 1 and extra_h == pad
        xp = None if direct else F.pad(x, (pad, pad, pad, extra_h))
        row_groups = [g for g in _offset_groups(sh) if g[0] < h_out]
        a_lim = row_groups[-1][1]
        kernels = self._phase_kernels(scale, x, slice(0, a_lim), condition=condition)
        # kernels: [a_lim, p_w, O, C, k, k]
        col_phase, col_src = _axis_plan(sw, w_out, x.device)
        out = x.new_empty(batch, n_out, n_kh, a_lim, w_out)
        # integer column scales: column j * p_w + c is phase c of input column j, a reshape
        # (the gather below was 1.8 of a 240x240 slice's 9.7 ms upscaler and skip at x2)
        blocks = None
        if sw.q == 1 and w_out == width * sw.p:
            blocks = out.view(batch, n_out, n_kh, a_lim, width, sw.p)
        for r0, (lo, hi) in enumerate(row_groups):
            weight = kernels[lo:hi].reshape(-1, self.in_features, k, k)
            if direct:
                y = F.conv2d(x, weight, padding=pad)
            else:
                rows = xp[:, :, r0 : r0 + (n_kh - 1) * sh.q + k]
                y = F.conv2d(rows, weight, stride=(sh.q, 1))  # [B, n_a * p_w * O, n_kh, W]
            y = y.reshape(batch, hi - lo, sw.p, n_out, n_kh, width)
            if blocks is not None:
                blocks[:, :, :, lo:hi] = y.permute(0, 3, 4, 1, 5, 2)
                continue
            # column j reads phase col_phase[j] at input column col_src[j]
            y = y[:, :, col_phase, :, :, col_src]  # [W_out, B, n_a, O, n_kh]
            out[:, :, :, lo:hi] = y.permute(1, 3, 4, 2, 0)
        return out.view(batch, n_out, n_kh * a_lim, w_out)[:, :, :h_out]

    def _forward_offset_batched(
        self, x: torch.Tensor, scale: Scale2d, out_shape, condition=None
    ) -> torch.Tensor:
        """All ``q_h * q_w`` offset groups (see :meth:`_forward_offset_groups`) in three
        batched matmuls per chunk of rows, one per kernel row: a handful of large operations
        whatever the period, which matters where each operation has a fixed cost (a busy
        CPU's thread wake-ups, GPU launches).  Only the three column taps are gathered
        (``3 x (q_h + 2) / q_h`` the features, where whole 3x3 patches were 9x: the copy,
        not the matmul, was two thirds of the time), and the kernel row ``dy`` of group
        ``(r0, c0)`` reads gathered row ``r0 + dy``: the same block shifted.  Groups are
        padded to the largest phase count on both axes (at most ``(ceil(s) / s)^2`` extra
        work).  Long periods fall back to one group row at a time."""
        batch, channels, height, width = x.shape
        h_out, w_out = out_shape
        sh, sw = scale.h, scale.w
        k, n_out = self.kernel_size, self.out_channels
        row_groups = [g for g in _offset_groups(sh) if g[0] < h_out]
        col_groups = [g for g in _offset_groups(sw) if g[0] < w_out]
        n_rh, n_cw = len(row_groups), len(col_groups)
        a_max = max(hi - lo for lo, hi in row_groups)
        b_max = max(hi - lo for lo, hi in col_groups)
        if n_rh * n_cw * a_max * b_max > BATCHED_MAX_SLOTS:
            return self._forward_offset_groups(x, scale, out_shape, condition)
        a_lim, b_lim = row_groups[-1][1], col_groups[-1][1]
        xl, n_kh, n_kw = _padded_channels_last(x, scale, out_shape, k)
        hp, wp = xl.shape[1:3]
        slot_h, place_h = _slots(row_groups, a_max, x.device)
        slot_w, place_w = _slots(col_groups, b_max, x.device)
        n_tap = k * channels  # one kernel row: k column taps of every channel
        # kernels [a, b, O, C, ky, kx] -> per kernel row [n_rh * n_cw, kx*C, a_max * b_max * O]
        kern = self._phase_kernels(scale, x, slice(0, a_lim), slice(0, b_lim), condition=condition)
        kern = kern.permute(0, 1, 2, 4, 5, 3)[slot_h.view(-1, 1), slot_w.view(1, -1)]
        kern = kern.reshape(n_rh, a_max, n_cw, b_max, n_out, k, n_tap).permute(5, 0, 2, 6, 1, 3, 4)
        kern = kern.reshape(k, n_rh * n_cw, n_tap, a_max * b_max * n_out)
        n_rows = n_rh + k - 1  # gathered row offsets r0 + dy
        row_bytes = n_rows * n_cw * batch * n_kw * n_tap * x.element_size()
        rows_per_chunk = max(1, PATCH_CHUNK_BYTES // row_bytes)
        padded = x.new_empty(batch, n_out, n_kh, n_rh * a_max, n_kw, n_cw * b_max)
        for k0 in range(0, n_kh, rows_per_chunk):
            n_k = min(rows_per_chunk, n_kh - k0)
            n_pix = batch * n_k * n_kw
            taps = xl.as_strided(
                (n_rows, n_cw, batch, n_k, n_kw, k, channels),
                (wp * channels, channels, hp * wp * channels, sh.q * wp * channels,
                 sw.q * channels, channels, 1),
                xl.storage_offset() + k0 * sh.q * wp * channels,
            ).contiguous()  # fmt: skip
            y = None
            for dy in range(k):
                rows = taps[dy : dy + n_rh].view(n_rh * n_cw, n_pix, n_tap)  # a view: contiguous
                y = torch.bmm(rows, kern[dy]) if y is None else torch.baddbmm(y, rows, kern[dy])
            y = y.view(n_rh, n_cw, batch, n_k, n_kw, a_max, b_max, n_out)
            padded[:, :, k0 : k0 + n_k] = y.permute(2, 7, 3, 0, 5, 4, 1, 6).reshape(
                batch, n_out, n_k, n_rh * a_max, n_kw, n_cw * b_max
            )
        out = padded.index_select(3, place_h).index_select(5, place_w)
        # a_lim < p_h (b_lim < p_w) only when one period block covers the whole output
        return out.view(batch, n_out, n_kh * a_lim, n_kw * b_lim)[:, :, :h_out, :w_out]

    def _forward_offset_groups(
        self, x: torch.Tensor, scale: Scale2d, out_shape, condition=None
    ) -> torch.Tensor:
        """The ideal work (one 3x3 dot product per output pixel and channel) in few calls.

        Output pixel ``(a + K*p_h, b + M*p_w)`` reads input pixel
        ``(r0 + K*q_h, c0 + M*q_w)`` with ``r0 = floor(a*q_h/p_h) < q_h`` (same for columns).
        So the input pixels with offsets ``(r0, c0)`` are read only by the phases
        ``a in A(r0)``, ``b in B(c0)`` (contiguous ranges of about ``s`` phases each).  For
        each ``r0`` (and chunk of rows ``K``), the 3x3 patches of all ``q_w`` column offsets
        are gathered channels-last (a strided view, one copy) and multiplied by their own
        phases' kernels in one batched matmul; column offsets with fewer phases than the
        largest are padded with a repeated phase whose result is dropped.  Memory is the
        output plus one bounded chunk of patches.
        """
        batch, channels, height, width = x.shape
        h_out, w_out = out_shape
        sh, sw = scale.h, scale.w
        k, n_out = self.kernel_size, self.out_channels
        n_in = channels * k * k
        xl, n_kh, n_kw = _padded_channels_last(x, scale, out_shape, k)
        hp, wp = xl.shape[1:3]
        # only the offsets whose phases exist in the output (all, unless H_out < p_h)
        row_groups = [g for g in _offset_groups(sh) if g[0] < h_out]
        col_groups = [g for g in _offset_groups(sw) if g[0] < w_out]
        a_lim, b_lim, n_cw = row_groups[-1][1], col_groups[-1][1], len(col_groups)
        b_max = max(hi - lo for lo, hi in col_groups)
        # [n_cw, b_max]: the phase computed in each padded slot; where each real phase lands
        slot_phase = torch.tensor(
            [[min(lo + j, hi - 1) for j in range(b_max)] for lo, hi in col_groups],
            device=x.device,
        )
        slot_of_phase = torch.tensor(
            [
                c0 * b_max + (b - lo)
                for c0, (lo, hi) in enumerate(col_groups)
                for b in range(lo, hi)
            ],
            device=x.device,
        )
        # one weight prediction for all phases, unless the period is long (then per row group)
        all_kernels = None
        if a_lim * b_lim <= KERNELS_AT_ONCE:
            all_kernels = self._phase_kernels(
                scale, x, slice(0, a_lim), slice(0, b_lim), condition=condition
            )
        out = x.new_empty(batch, n_out, n_kh, a_lim, n_kw, b_lim)
        row_bytes = batch * n_kw * n_cw * n_in * x.element_size()
        rows_per_chunk = max(1, PATCH_CHUNK_BYTES // row_bytes)
        for r0, (a_lo, a_hi) in enumerate(row_groups):
            n_a = a_hi - a_lo
            # kernels [n_a, b_lim, O, C, k, k] -> per column offset [n_cw, k*k*C, n_a*b_max*O]
            if all_kernels is None:
                kern = self._phase_kernels(
                    scale, x, slice(a_lo, a_hi), slice(0, b_lim), condition=condition
                )
            else:
                kern = all_kernels[a_lo:a_hi]
            kern = kern.permute(0, 1, 2, 4, 5, 3)[:, slot_phase]  # [n_a, n_cw, b_max, O, k,k,C]
            kern = kern.permute(1, 4, 5, 6, 0, 2, 3).reshape(n_cw, n_in, n_a * b_max * n_out)
            for k0 in range(0, n_kh, rows_per_chunk):
                n_k = min(rows_per_chunk, n_kh - k0)
                patches = xl.as_strided(
                    (n_cw, batch, n_k, n_kw, k, k, channels),
                    (channels, hp * wp * channels, sh.q * wp * channels, sw.q * channels,
                     wp * channels, channels, 1),
                    xl.storage_offset() + (r0 + k0 * sh.q) * wp * channels,
                )  # fmt: skip
                y = torch.bmm(patches.reshape(n_cw, batch * n_k * n_kw, n_in), kern)
                y = y.view(n_cw, batch, n_k, n_kw, n_a, b_max, n_out).permute(1, 6, 2, 4, 3, 0, 5)
                y = y.reshape(batch, n_out, n_k, n_a, n_kw, n_cw * b_max)[..., slot_of_phase]
                out[:, :, k0 : k0 + n_k, a_lo:a_hi] = y
        # a_lim < p_h (b_lim < p_w) only when one period block covers the whole output
        return out.view(batch, n_out, n_kh * a_lim, n_kw * b_lim)[:, :, :h_out, :w_out]

    # ------------------------------------------------------------------ reference
    def forward_reference(
        self,
        x: torch.Tensor,
        scale,
        out_shape: tuple[int, int] | None = None,
        condition: torch.Tensor | None = None,
    ):
        """Per-output-pixel implementation (Meta-SR's original formulation)."""
        self._check(x)
        scale = Scale2d.of(scale)
        height, width = x.shape[-2:]
        h_out, w_out = out_shape or scale.out_shape(height, width)
        k = self.kernel_size
        rows = torch.arange(h_out)
        cols = torch.arange(w_out)
        src_r = (rows * scale.h.q) // scale.h.p
        src_c = (cols * scale.w.q) // scale.w.p
        off_r = ((rows * scale.h.q) % scale.h.p).to(x.dtype) / scale.h.p
        off_c = ((cols * scale.w.q) % scale.w.p).to(x.dtype) / scale.w.p
        pos = torch.stack(
            [
                off_r[:, None].expand(h_out, w_out),
                off_c[None, :].expand(h_out, w_out),
                torch.full((h_out, w_out), scale.scale_feature(), dtype=x.dtype),
            ],
            dim=-1,
        ).to(x.device)
        # one weight vector per output pixel: [H_out, W_out, O, C*k*k]
        weights = self.weight_prediction(self._with_condition(pos.view(-1, 3), condition))
        weights = weights.view(h_out, w_out, self.out_channels, -1)
        patches = F.unfold(x, k, padding=k // 2).view(x.shape[0], -1, height, width)
        patches = patches[:, :, src_r.to(x.device)][:, :, :, src_c.to(x.device)]
        # out[b, o, i, j] = sum_n weights[i, j, o, n] * patches[b, n, i, j]
        return torch.einsum("ijon,bnij->boij", weights, patches)


def _padded_channels_last(
    x: torch.Tensor, scale: Scale2d, out_shape: tuple[int, int], k: int
) -> tuple[torch.Tensor, int, int]:
    """``x`` zero-padded (``k // 2`` before, enough after that the last, partial period
    blocks can be read) in channels-last layout, and the period blocks per axis."""
    height, width = x.shape[-2:]
    sh, sw = scale.h, scale.w
    pad = k // 2
    n_kh, n_kw = -(-out_shape[0] // sh.p), -(-out_shape[1] // sw.p)
    extra_h = max((sh.q - 1) + (n_kh - 1) * sh.q + k - height - pad, pad)
    extra_w = max((sw.q - 1) + (n_kw - 1) * sw.q + k - width - pad, pad)
    return F.pad(x, (pad, extra_w, pad, extra_h)).permute(0, 2, 3, 1).contiguous(), n_kh, n_kw


def _offset_groups(axis: AxisScale) -> list[tuple[int, int]]:
    """For each input offset ``r0 = 0 .. q-1``: the phase range ``[lo, hi)`` reading it."""
    bounds = [-(-r0 * axis.p // axis.q) for r0 in range(axis.q + 1)]  # first a with a*q/p >= r0
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _slots(groups: list[tuple[int, int]], width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Groups padded to ``width`` slots: the phase computed in each slot (the group's last
    phase repeats in padding slots, whose results are dropped) and each phase's slot."""
    slot = [[min(lo + j, hi - 1) for j in range(width)] for lo, hi in groups]
    place = [g * width + (a - lo) for g, (lo, hi) in enumerate(groups) for a in range(lo, hi)]
    return torch.tensor(slot, device=device), torch.tensor(place, device=device)


def _axis_plan(axis: AxisScale, n_out: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """For every output index: its phase and the input index it reads."""
    idx = torch.arange(n_out)
    return (idx % axis.p).to(device), ((idx * axis.q) // axis.p).to(device)
