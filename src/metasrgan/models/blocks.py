"""Building blocks shared by the SRGAN-family networks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from metasrgan.models import fused


def norm_layer(kind: str, channels: int) -> nn.Module:
    """``"batch"`` (the paper) or ``"none"`` (no normalisation, as ESRGAN/EDSR)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch' or 'none', got {kind!r}")


class FreshPReLU(nn.PReLU):
    """PReLU for a fresh convolution output, overwritten in place where nothing records
    gradients (CPU inference, one shared slope: ``leaky_relu_`` is the same function).

    On a 240x240x64 map (2 threads) the in-place form took 0.46 ms against 0.76 ms for
    ``nn.PReLU``, which also allocates a new map. Training and GPUs keep ``nn.PReLU``.
    The state dict is ``nn.PReLU``'s, so checkpoints load either way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() and x.device.type == "cpu" and self.num_parameters == 1:
            return F.leaky_relu_(x, float(self.weight))
        return super().forward(x)


class ResidualBlock(nn.Module):
    """SRGAN residual block: conv-norm-PReLU-conv-norm + skip."""

    def __init__(self, features: int = 64, norm: str = "batch"):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            norm_layer(norm, features),
            FreshPReLU(),
            nn.Conv2d(features, features, 3, padding=1),
            norm_layer(norm, features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv1, norm1, act, conv2, norm2 = self.body
        if isinstance(norm1, nn.Identity) and fused.usable(conv1, act, x):
            return norm2(conv2(fused.conv_prelu(conv1, act, x))).add_(x)
        # in place: the conv's fresh output is not saved for backward (5-9% of the
        # extractor's time on CPU, a full-map allocation per block)
        return self.body(x).add_(x)


class SRResNetFeatures(nn.Module):
    """SRGAN feature extractor: 9x9 head + PReLU, residual blocks, conv + norm, global skip."""

    def __init__(
        self, in_channels: int = 1, features: int = 64, blocks: int = 5, norm: str = "batch"
    ):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(in_channels, features, 9, padding=4), FreshPReLU())
        self.body = nn.Sequential(*[ResidualBlock(features, norm) for _ in range(blocks)])
        self.body_end = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1), norm_layer(norm, features)
        )

    def forward(self, x: torch.Tensor, head_bias: torch.Tensor | None = None) -> torch.Tensor:
        """``head_bias`` (``[B, F, 1, 1]``) is added before the head's PReLU (a condition)."""
        head = self._head(x, head_bias)
        return self.body_end(self.body(head)).add_(head)

    def _head(self, x: torch.Tensor, head_bias: torch.Tensor | None) -> torch.Tensor:
        conv, act = self.head
        one_bias = head_bias is None or head_bias.shape[0] == 1
        if one_bias and fused.usable(conv, act, x):
            bias = None if head_bias is None else head_bias.reshape(-1)
            return fused.conv_prelu(conv, act, x, bias)
        return self.head(x) if head_bias is None else act(conv(x).add_(head_bias))


class NoiseEstimator(nn.Module):
    """An image's noise level, learned on top of a classical estimate.

    The classical estimate is :func:`classical_sigma`: Donoho's, or the background's where the
    image has one.  Donoho's alone reads the detail of k-space-truncated low-resolution MRI,
    which reaches the Nyquist frequency, as 1-6% noise when it has none; the background, as MR
    physicists read it, tells noise from anatomy.  A linear head maps its log and the
    whole-image means of a small CNN's features (how much structure there is) to the log
    level; it starts as the classical estimate and learns the correction from the noise each
    training batch was given.  Whole-image on purpose: a 33-pixel receptive field cannot tell
    fine anatomy from noise, a whole image can.  Hand-written Haar in torch because it runs in
    the forward pass, on training batches and on the GPU."""

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
            self.head.weight[0, 0] = 1.0  # log level = log classical estimate at first
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` images in [0, 1] and standardised -> ``[B]`` levels (x's units)."""
        pooled = self.body(encoded).mean(dim=(2, 3))
        classical = torch.log(classical_sigma(x) + 1e-3)[:, None]
        return torch.exp(self.head(torch.cat([classical, pooled], dim=1)))[:, 0]


def _haar(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and finest diagonal Haar coefficients of the 2 x 2 blocks of ``x``."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    t = x[..., :h, :w].detach().float()
    a, b, c, d = t[..., 0::2, 0::2], t[..., 0::2, 1::2], t[..., 1::2, 0::2], t[..., 1::2, 1::2]
    return (a + b + c + d) / 4, (a - b - c + d) / 2


def donoho_sigma(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B]``: median |HH| / 0.6745 (0 below 2 x 2 pixels)."""
    if x.shape[-2] < 2 or x.shape[-1] < 2:
        return x.new_zeros(x.shape[0])
    hh = _haar(x)[1]
    return (hh.abs().flatten(1).median(dim=1).values / 0.6745).to(x.dtype)


BACKGROUND_LEVEL = 0.1
"""2 x 2 blocks darker than this (a fraction of the range) count as background."""
RAYLEIGH_STD = math.sqrt(2 - math.pi / 2)
"""The standard deviation of Rician noise where there is no signal, in units of sigma."""


def background_sigma(x: torch.Tensor, min_fraction: float = 0.05) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B]``: the noise of the dark background, as MR physicists
    estimate it (Henkelman 1985; Sijbers et al. 2007): a magnitude image's air holds Rayleigh
    noise of std ``0.655 sigma``, a clean or skull-stripped one holds zeros, and neither holds
    anatomy.  Donoho's estimate over the background blocks, scaled by ``1 / 0.655``; ``inf``
    where fewer than ``min_fraction`` of the blocks (or 16) are background."""
    if x.shape[-2] < 2 or x.shape[-1] < 2:
        return torch.full((x.shape[0],), math.inf, dtype=x.dtype, device=x.device)
    mean, hh = (t.flatten(1) for t in _haar(x))
    dark = mean < BACKGROUND_LEVEL
    count = dark.sum(dim=1)
    enough = (count >= 16) & (count >= min_fraction * mean.shape[1])
    # the median over each image's dark blocks: sort with the others pushed to the end
    values = torch.where(dark, hh.abs(), torch.full_like(hh, math.inf)).sort(dim=1).values
    middle = ((count - 1).clamp(min=0) // 2)[:, None]
    median = values.gather(1, middle)[:, 0]
    sigma = median / 0.6745 / RAYLEIGH_STD
    return torch.where(enough, sigma, torch.full_like(sigma, math.inf)).to(x.dtype)


def classical_sigma(x: torch.Tensor) -> torch.Tensor:
    """``[B]``: the smaller of the background's and Donoho's estimates (both overestimate
    rather than miss noise: the background's only where dark tissue has texture, Donoho's
    where anatomy reaches the Nyquist frequency)."""
    return torch.minimum(background_sigma(x), donoho_sigma(x))


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
