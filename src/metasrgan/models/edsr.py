"""EDSR x2 baseline (Lim et al.): 256 features, 32 blocks, residual scaling 0.1."""

from __future__ import annotations

import torch
from torch import nn

from metasrgan.models.blocks import IntensityNormalization
from metasrgan.models.srgan import FixedScaleMixin
from metasrgan.registry import register


class EDSRBlock(nn.Module):
    def __init__(self, features: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


@register("edsr")
class EDSR(FixedScaleMixin, nn.Module):
    def __init__(
        self,
        channels: int = 1,
        features: int = 256,
        blocks: int = 32,
        res_scale: float = 0.1,
        scale: int = 2,
        mean: float = 0.370,
        std: float = 0.117,
    ):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"EDSR scale must be 2, 3 or 4, got {scale}")
        self.fixed_scale = scale
        self.normalization = IntensityNormalization(mean, std)
        self.head = nn.Conv2d(channels, features, 3, padding=1)
        self.body = nn.Sequential(*[EDSRBlock(features, res_scale) for _ in range(blocks)])
        self.body_end = nn.Conv2d(features, features, 3, padding=1)
        shuffle: list[nn.Module] = []
        if scale == 4:
            for _ in range(2):
                shuffle += [nn.Conv2d(features, features * 4, 3, padding=1), nn.PixelShuffle(2)]
        else:
            shuffle += [
                nn.Conv2d(features, features * scale * scale, 3, padding=1),
                nn.PixelShuffle(scale),
            ]
        self.upsample = nn.Sequential(*shuffle)
        self.tail = nn.Conv2d(features, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, scale=None, out_shape=None) -> torch.Tensor:
        self._check_scale(scale)
        head = self.head(self.normalization.encode(x))
        y = self.tail(self.upsample(head + self.body_end(self.body(head))))
        return self.normalization.decode(y)
