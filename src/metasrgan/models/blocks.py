"""Building blocks shared by the SRGAN-family networks."""

from __future__ import annotations

import torch
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """``"batch"`` (the paper) or ``"none"`` (no normalisation, as ESRGAN/EDSR)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch' or 'none', got {kind!r}")


class ResidualBlock(nn.Module):
    """SRGAN residual block: conv-norm-PReLU-conv-norm + skip."""

    def __init__(self, features: int = 64, norm: str = "batch"):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            norm_layer(norm, features),
            nn.PReLU(),
            nn.Conv2d(features, features, 3, padding=1),
            norm_layer(norm, features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNetFeatures(nn.Module):
    """SRGAN feature extractor: 9x9 head + PReLU, residual blocks, conv + norm, global skip."""

    def __init__(
        self, in_channels: int = 1, features: int = 64, blocks: int = 5, norm: str = "batch"
    ):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(in_channels, features, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*[ResidualBlock(features, norm) for _ in range(blocks)])
        self.body_end = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1), norm_layer(norm, features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x)
        return head + self.body_end(self.body(head))


class IntensityNormalization(nn.Module):
    """Maps images in [0, 1] to the network's standardised space and back (no parameters).

    Keeping the paper's mean/std (0.370/0.117) inside the model means every model takes and
    returns images in [0, 1], whatever normalisation it was trained with.
    """

    def __init__(self, mean: float, std: float):
        super().__init__()
        if std <= 0:
            raise ValueError(f"std must be positive, got {std}")
        self.register_buffer("mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("std", torch.tensor(float(std)), persistent=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean
