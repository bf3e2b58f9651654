"""The Meta-SRGAN generator: SRGAN's feature extractor + the Meta-Upscale Module."""

from __future__ import annotations

import math

import torch
from torch import nn

from metasrgan.interpolation import bicubic as bicubic_resize
from metasrgan.interpolation import interpolate
from metasrgan.models.blocks import IntensityNormalization, SRResNetFeatures
from metasrgan.models.meta_upscale import MetaUpscale
from metasrgan.registry import register
from metasrgan.scale import Scale2d

SKIPS = ("none", "bicubic", "sinc", "acquisition")


@register("meta-srgan")
class MetaSRGAN(nn.Module):
    """Arbitrary-scale generator.  Input and output are images in [0, 1].

    Args:
        channels: image channels (1 for MRI, 3 for RGB).
        features, blocks: width and depth of the feature extractor (paper: 64, 5).
        norm: ``"batch"`` (paper) or ``"none"``.
        mean, std: standardisation applied inside the model (paper: 0.370, 0.117).
        skip: ``"none"`` (paper), ``"bicubic"`` or ``"sinc"`` (add that interpolation of the
            input, so the network predicts only a residual), or ``"acquisition"`` (the
            interpolation that suits each acquisition: sinc for k-space, else bicubic).
        acquisitions: the kinds of low-resolution input the model is conditioned on (see
            :data:`metasrgan.degradations.ACQUISITIONS`); each call says which one it gets,
            and the weight predictor receives it (one-hot) with the scale's anisotropy
            ``ln(s_h / s_w)``.  Empty (the paper): unconditioned.
        default_acquisition: used when a call names none.
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
        acquisitions: list[str] | tuple[str, ...] = (),
        default_acquisition: str | None = None,
        upscaler: str = "fast",
    ):
        super().__init__()
        from metasrgan.degradations import ACQUISITIONS

        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {', '.join(SKIPS)}, got {skip!r}")
        if upscaler not in ("fast", "reference"):
            raise ValueError(f"upscaler must be 'fast' or 'reference', got {upscaler!r}")
        for a in acquisitions:
            if a not in ACQUISITIONS:
                raise ValueError(f"acquisition {a!r} is not one of {', '.join(ACQUISITIONS)}")
        if skip == "acquisition" and not acquisitions:
            raise ValueError("skip 'acquisition' needs a list of acquisitions")
        if default_acquisition is not None and default_acquisition not in acquisitions:
            raise ValueError(f"default_acquisition {default_acquisition!r} is not in acquisitions")
        self.channels = channels
        self.skip = skip
        self.acquisitions = tuple(acquisitions)
        self.default_acquisition = default_acquisition or (
            self.acquisitions[0] if self.acquisitions else None
        )
        self.upscaler = upscaler
        self.normalization = IntensityNormalization(mean, std)
        self.features = SRResNetFeatures(channels, features, blocks, norm)
        n_cond = len(self.acquisitions) + 1 if self.acquisitions else 0
        self.upscale = MetaUpscale(features, channels, 3, conditions=n_cond)
        if skip != "none":
            # start exactly at the skip's interpolation: the residual's last layer begins at 0
            last = self.upscale.weight_prediction.body[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(
        self,
        x: torch.Tensor,
        scale,
        out_shape: tuple[int, int] | None = None,
        acquisition: str | None = None,
    ) -> torch.Tensor:
        """``x``: ``[B, C, H, W]`` in [0, 1]; returns ``[B, C, H*s_h, W*s_w]`` (not clamped)."""
        return self.upscale_features(x, self.extract_features(x), scale, out_shape, acquisition)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """The scale-independent part (most of the cost): cache it to zoom one image often."""
        return self.features(self.normalization.encode(x))

    def upscale_features(
        self,
        x: torch.Tensor,
        feats: torch.Tensor,
        scale,
        out_shape: tuple[int, int] | None = None,
        acquisition: str | None = None,
    ) -> torch.Tensor:
        """The rest of :meth:`forward` given ``feats = extract_features(x)``."""
        scale = Scale2d.of(scale)
        out_shape = tuple(out_shape or scale.out_shape(*x.shape[-2:]))
        y = self.residual(feats, scale, out_shape, acquisition)
        if self.skip == "none":
            return self.normalization.decode(y)
        return self.skip_image(x, out_shape, acquisition) + y

    def residual(
        self, feats: torch.Tensor, scale, out_shape: tuple[int, int], acquisition: str | None = None
    ) -> torch.Tensor:
        """The Meta-Upscale's output in image units (what is added to the skip); local, so
        tiles of it can be computed apart (see :mod:`metasrgan.tiling`)."""
        scale = Scale2d.of(scale)
        upscale = self.upscale if self.upscaler == "fast" else self.upscale.forward_reference
        y = upscale(feats, scale, out_shape, self.condition(scale, acquisition, feats))
        return y if self.skip == "none" else y * self.normalization.std

    def skip_image(
        self, x: torch.Tensor, out_shape: tuple[int, int], acquisition: str | None = None
    ) -> torch.Tensor:
        """The interpolation the residual is added to (zeros when ``skip`` is none)."""
        method = self.skip_method(acquisition)
        if method is None:
            return x.new_zeros(*x.shape[:-2], *out_shape)
        return interpolate(x, out_shape, method)

    def skip_method(self, acquisition: str | None = None) -> str | None:
        from metasrgan.degradations import ACQUISITIONS

        if self.skip == "none":
            return None
        if self.skip == "acquisition":
            skip = ACQUISITIONS[self.resolve_acquisition(acquisition)].skip
            return "sinc-mirror" if skip == "sinc" else skip
        return "sinc-mirror" if self.skip == "sinc" else self.skip

    def resolve_acquisition(self, acquisition: str | None) -> str | None:
        """The acquisition a call is conditioned on (None for unconditioned models)."""
        if not self.acquisitions:
            return None
        acquisition = acquisition or self.default_acquisition
        if acquisition not in self.acquisitions:
            raise ValueError(
                f"this model knows the acquisitions {', '.join(self.acquisitions)}; "
                f"got {acquisition!r}"
            )
        return acquisition

    def condition(self, scale: Scale2d, acquisition: str | None, ref: torch.Tensor):
        """One-hot acquisition and ``ln(s_h / s_w)`` (None for unconditioned models)."""
        acquisition = self.resolve_acquisition(acquisition)
        if acquisition is None:
            return None
        cond = torch.zeros(len(self.acquisitions) + 1, dtype=ref.dtype, device=ref.device)
        cond[self.acquisitions.index(acquisition)] = 1.0
        cond[-1] = math.log(scale.h.value / scale.w.value)
        return cond


__all__ = ["MetaSRGAN", "bicubic_resize"]
