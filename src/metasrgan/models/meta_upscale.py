"""Meta-Upscale Module (Hu et al., Meta-SR, CVPR 2019): an upsampler for any real scale.

A weight prediction network maps each output pixel's position ``(off_h, off_w, 1/s)`` to the
576 weights (``out_channels x in_channels x 3 x 3``) applied to the 3x3 feature
neighbourhood of the input pixel it reads (see :mod:`metasrgan.scale` for the exact index
rule).  Two implementations compute the same function:

- :meth:`MetaUpscale.forward_reference`: per output pixel, as the original code does (a
  weight for every output pixel, memory ``O(H_out * W_out * 576)``).  Kept as the
  reference the fast path is tested against.
- :meth:`MetaUpscale.forward` (fast): pixels of equal row phase ``a`` and column phase
  ``b`` share their weights, so the module is one strided convolution per row phase with
  ``p_w`` predicted kernels, followed by a column gather.  Cost is ``q_w`` times the ideal
  576 multiply-adds per output pixel, memory ``O(H_out * W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metasrgan.scale import AxisScale, Scale2d


class WeightPrediction(nn.Module):
    """FC 3->hidden, ReLU, FC hidden->out*in*k*k (the paper: 3->256->576)."""

    def __init__(self, in_features: int, out_channels: int, kernel_size: int, hidden: int = 256):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(3, hidden),
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
    """

    def __init__(
        self, in_features: int = 64, out_channels: int = 1, kernel_size: int = 3, hidden: int = 256
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd")
        self.in_features = in_features
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.weight_prediction = WeightPrediction(in_features, out_channels, kernel_size, hidden)

    # ------------------------------------------------------------------ shared pieces
    def _phase_kernels(self, scale: Scale2d, ref: torch.Tensor) -> torch.Tensor:
        """Predicted kernels for every (row phase, column phase): ``[p_h, p_w, O, C, k, k]``."""
        off_h = torch.tensor(scale.h.phase_offsets(), dtype=ref.dtype, device=ref.device)
        off_w = torch.tensor(scale.w.phase_offsets(), dtype=ref.dtype, device=ref.device)
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
        weights = self.weight_prediction(pos)
        return weights.view(ph, pw, self.out_channels, self.in_features, k, k)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_features:
            raise ValueError(
                f"expected features [B, {self.in_features}, H, W], got {tuple(x.shape)}"
            )

    # ------------------------------------------------------------------ fast path
    def forward(self, x: torch.Tensor, scale, out_shape: tuple[int, int] | None = None):
        """Upscale features ``x`` by ``scale`` (a number, ``(s_h, s_w)`` or :class:`Scale2d`).

        ``out_shape`` overrides the output size rule for a target size (then the scale
        must be the exact ratio, see :func:`metasrgan.scale.scale_from_sizes`).
        """
        self._check(x)
        scale = Scale2d.of(scale)
        height, width = x.shape[-2:]
        h_out, w_out = out_shape or scale.out_shape(height, width)
        kernels = self._phase_kernels(scale, x)
        pad = self.kernel_size // 2
        xp = F.pad(x, (pad, pad, pad, pad))
        col_phase, col_src = _axis_plan(scale.w, w_out, x.device)
        k = self.kernel_size
        out = x.new_empty(x.shape[0], self.out_channels, h_out, w_out)
        for a in range(scale.h.p):
            n_rows = scale.h.phase_count(a, h_out)
            if n_rows == 0:
                continue
            r0 = scale.h.phase_start(a)
            rows = xp[:, :, r0 : r0 + (n_rows - 1) * scale.h.q + k]
            # kernels of this row phase for every column phase: [p_w * O, C, k, k]
            weight = kernels[a].reshape(-1, self.in_features, k, k)
            y = F.conv2d(rows, weight, stride=(scale.h.q, 1))  # [B, p_w*O, n_rows, W]
            y = y.view(x.shape[0], scale.w.p, self.out_channels, n_rows, width)
            # column j reads phase col_phase[j] at input column col_src[j]
            y = y[:, col_phase, :, :, col_src]  # [W_out, B, O, n_rows] (advanced indexing)
            out[:, :, a :: scale.h.p] = y.permute(1, 2, 3, 0)
        return out

    # ------------------------------------------------------------------ reference
    def forward_reference(self, x: torch.Tensor, scale, out_shape: tuple[int, int] | None = None):
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
        weights = self.weight_prediction(pos.view(-1, 3)).view(h_out, w_out, self.out_channels, -1)
        patches = F.unfold(x, k, padding=k // 2).view(x.shape[0], -1, height, width)
        patches = patches[:, :, src_r.to(x.device)][:, :, :, src_c.to(x.device)]
        # out[b, o, i, j] = sum_n weights[i, j, o, n] * patches[b, n, i, j]
        return torch.einsum("ijon,bnij->boij", weights, patches)


def _axis_plan(axis: AxisScale, n_out: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """For every output index: its phase and the input index it reads."""
    idx = torch.arange(n_out)
    return (idx % axis.p).to(device), ((idx * axis.q) // axis.p).to(device)
