"""The Meta-SRGAN generator: SRGAN's feature extractor + the Meta-Upscale Module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metasrgan.models.blocks import IntensityNormalization, SRResNetFeatures
from metasrgan.models.meta_upscale import MetaUpscale
from metasrgan.registry import register
from metasrgan.scale import Scale2d


@register("meta-srgan")
class MetaSRGAN(nn.Module):
    """Arbitrary-scale generator.  Input and output are images in [0, 1].

    Args:
        channels: image channels (1 for MRI, 3 for RGB).
        features, blocks: width and depth of the feature extractor (paper: 64, 5).
        norm: ``"batch"`` (paper) or ``"none"``.
        mean, std: standardisation applied inside the model (paper: 0.370, 0.117).
        skip: ``"none"`` (paper) or ``"bicubic"``: add the bicubic upscaling of the input
            so the network predicts only a residual (more robust on unseen scans).
        upscaler: ``"fast"`` or ``"reference"`` (per-pixel, for testing and benchmarks).
    """

    def __init__(
        self,
        channels: int = 1,
        features: int = 64,
        blocks: int = 5,
        norm: str = "batch",
        mean: float = 0.370,
        std: float = 0.117,
        skip: str = "none",
        upscaler: str = "fast",
    ):
        super().__init__()
        if skip not in ("none", "bicubic"):
            raise ValueError(f"skip must be 'none' or 'bicubic', got {skip!r}")
        if upscaler not in ("fast", "reference"):
            raise ValueError(f"upscaler must be 'fast' or 'reference', got {upscaler!r}")
        self.channels = channels
        self.skip = skip
        self.upscaler = upscaler
        self.normalization = IntensityNormalization(mean, std)
        self.features = SRResNetFeatures(channels, features, blocks, norm)
        self.upscale = MetaUpscale(features, channels, 3)
        if skip == "bicubic":
            # start exactly at bicubic: the residual branch's last layer begins at zero
            last = self.upscale.weight_prediction.body[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(
        self, x: torch.Tensor, scale, out_shape: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """``x``: ``[B, C, H, W]`` in [0, 1]; returns ``[B, C, H*s_h, W*s_w]`` (not clamped)."""
        return self.upscale_features(x, self.extract_features(x), scale, out_shape)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """The scale-independent part (most of the cost): cache it to zoom one image often."""
        return self.features(self.normalization.encode(x))

    def upscale_features(
        self, x: torch.Tensor, feats: torch.Tensor, scale, out_shape: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """The rest of :meth:`forward` given ``feats = extract_features(x)``."""
        scale = Scale2d.of(scale)
        out_shape = out_shape or scale.out_shape(*x.shape[-2:])
        upscale = self.upscale if self.upscaler == "fast" else self.upscale.forward_reference
        y = upscale(feats, scale, out_shape)
        if self.skip == "bicubic":
            return bicubic_resize(x, out_shape) + y * self.normalization.std
        return self.normalization.decode(y)


def bicubic_resize(x: torch.Tensor, out_shape: tuple[int, int]) -> torch.Tensor:
    """Bicubic interpolation to an exact size (pixel-centre aligned, real ratio)."""
    return F.interpolate(x, size=tuple(out_shape), mode="bicubic", align_corners=False)
