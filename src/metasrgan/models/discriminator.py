"""SRGAN's discriminator, made size-agnostic with adaptive average pooling."""

from __future__ import annotations

import torch
from torch import nn

from metasrgan.models.blocks import IntensityNormalization
from metasrgan.registry import register


@register("discriminator")
class Discriminator(nn.Module):
    """Returns the probability that each image is real, ``[B, 1]``.

    ``sigmoid=False`` returns logits instead (numerically safer losses); the layout is
    the paper's either way.
    """

    def __init__(
        self,
        channels: int = 1,
        widths: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 512, 512),
        mean: float = 0.370,
        std: float = 0.117,
        sigmoid: bool = True,
    ):
        super().__init__()
        self.normalization = IntensityNormalization(mean, std)
        layers: list[nn.Module] = []
        prev = channels
        for i, width in enumerate(widths):
            stride = 2 if i % 2 == 1 else 1
            layers.append(nn.Conv2d(prev, width, 3, stride=stride, padding=1))
            if i > 0:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            prev = width
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(prev, 1024, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(1024, 1, 1),
        ]
        if sigmoid:
            head.append(nn.Sigmoid())
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalization.encode(x))).flatten(1)
