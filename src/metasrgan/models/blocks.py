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

    def forward(self, x: torch.Tensor, head_bias: torch.Tensor | None = None) -> torch.Tensor:
        """``head_bias`` (``[B, F, 1, 1]``) is added before the head's PReLU (a condition)."""
        head = self.head(x) if head_bias is None else self.head[1](self.head[0](x) + head_bias)
        return head + self.body_end(self.body(head))


class NoiseEstimator(nn.Module):
    """An image's noise level, learned on top of a classical estimate.

    Donoho's robust estimate (the median absolute finest diagonal Haar coefficient over
    0.6745, as ``skimage.restoration.estimate_sigma`` with Daubechies wavelets) is exact on
    flat noisy images but reads the detail of k-space-truncated low-resolution MRI, which
    reaches the Nyquist frequency, as 3-6% noise when it has none.  So a linear head maps its
    log and the whole-image means of a small CNN's features (how much structure there is) to
    the log level; it starts as Donoho's estimate and learns the correction from the noise
    each training batch was given.  Whole-image on purpose: a 33-pixel receptive field cannot
    tell fine anatomy from noise, a whole image can.  Hand-written Haar in torch because it
    runs in the forward pass, on training batches and on the GPU."""

    def __init__(self, channels: int = 1, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(width + 1, 1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.weight[0, 0] = 1.0  # log level = log Donoho at first
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` images in [0, 1] and standardised -> ``[B]`` levels (x's units)."""
        pooled = self.body(encoded).mean(dim=(2, 3))
        mad = torch.log(donoho_sigma(x) + 1e-3)[:, None]
        return torch.exp(self.head(torch.cat([mad, pooled], dim=1)))[:, 0]


def donoho_sigma(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B]``: median |HH| / 0.6745 (0 below 2 x 2 pixels)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if h == 0 or w == 0:
        return x.new_zeros(x.shape[0])
    t = x[..., :h, :w].detach().float()
    hh = (t[..., 0::2, 0::2] - t[..., 0::2, 1::2] - t[..., 1::2, 0::2] + t[..., 1::2, 1::2]) / 2
    return (hh.abs().flatten(1).median(dim=1).values / 0.6745).to(x.dtype)


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
