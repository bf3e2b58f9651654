"""SRGAN x2 baseline (Ledig et al.) with the paper's 5 residual blocks."""

from __future__ import annotations

import torch
from torch import nn

from metasrgan.models.blocks import IntensityNormalization, SRResNetFeatures
from metasrgan.registry import register
from metasrgan.scale import Scale2d


class FixedScaleMixin:
    """Fixed-scale networks refuse any other scale clearly instead of resizing silently."""

    fixed_scale: int

    def _check_scale(self, scale) -> None:
        if scale is None:
            return
        values = Scale2d.of(scale).values
        if any(abs(v - self.fixed_scale) > 1e-9 for v in values):
            raise ValueError(
                f"{type(self).__name__} only upscales by x{self.fixed_scale}, got {values}"
            )


@register("srgan")
class SRGAN(FixedScaleMixin, nn.Module):
    """Feature extractor, 3x3 conv 64->256, PixelShuffle(2), PReLU, 9x9 conv 64->C."""

    def __init__(
        self,
        channels: int = 1,
        features: int = 64,
        blocks: int = 5,
        norm: str = "batch",
        mean: float = 0.370,
        std: float = 0.117,
    ):
        super().__init__()
        self.fixed_scale = 2
        self.normalization = IntensityNormalization(mean, std)
        self.features = SRResNetFeatures(channels, features, blocks, norm)
        self.upsample = nn.Sequential(
            nn.Conv2d(features, features * 4, 3, padding=1),
            nn.PixelShuffle(2),
            nn.PReLU(),
            nn.Conv2d(features, channels, 9, padding=4),
        )

    def forward(self, x: torch.Tensor, scale=2, out_shape=None) -> torch.Tensor:
        self._check_scale(scale)
        y = self.upsample(self.features(self.normalization.encode(x)))
        return self.normalization.decode(y)
