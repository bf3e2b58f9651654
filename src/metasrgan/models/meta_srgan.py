"""The Meta-SRGAN generator: SRGAN's feature extractor + the Meta-Upscale Module."""

from __future__ import annotations

import math

import torch
from torch import nn

from metasrgan.degradations.fourier import acquired_band, band_edge_ratio
from metasrgan.interpolation import bicubic as bicubic_resize
from metasrgan.interpolation import interpolate
from metasrgan.models.blocks import IntensityNormalization, NoiseEstimator, SRResNetFeatures
from metasrgan.models.calibration import fit_terms, gain_from
from metasrgan.models.meta_upscale import MetaUpscale
from metasrgan.registry import register
from metasrgan.scale import Scale2d

SKIPS = ("none", "bicubic", "sinc", "acquisition")
NOISE_UNIT = 0.01
"""Noise levels enter the network in units of 1% of the image range."""
BAND_GATE_START = [4.0, math.log(0.015)]
"""The band trust's first slope and log-threshold of the noise level (learned from there):
clean plain matrices of the validation slabs estimate under 1.5%."""
FILTER_RULE = (3.0, -4.8)
"""Slope and log-threshold of the band trust in the band-edge ratio, fixed: on whole slices of
the validation slabs plain matrices have log ratios of -4.2 to -2.9 and apodisation filters
take them to -5 to -7.6, but on training patches the ratio varies with content, and learning
these two numbers there made the trust soft (0.5-0.7 on clean plain input), which lost 0.7 dB
on the validation slabs' clean k-space against this rule."""


def uses_sinc_skip(skip: str, acquisitions) -> bool:
    """Whether a model with this ``skip`` starts some acquisition from a sinc skip."""
    from metasrgan.degradations import ACQUISITIONS

    if skip == "acquisition":
        return any(ACQUISITIONS[a].skip == "sinc" for a in acquisitions)
    return skip == "sinc"


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
        noise_input: condition the features on the input's noise level (estimated on the
            whole image by a learned :class:`~metasrgan.models.blocks.NoiseEstimator`, or
            given per call): a learned bias of the first layer, as FFDNet's noise-level
            map, so one model sharpens clean inputs and denoises noisy ones.
        data_consistency: for k-space acquisitions, keep the frequencies the scanner
            acquired: the residual's part inside the input's band is removed (the skip, a
            periodic zero-filled sinc, is exactly that band), in proportion to a learned
            function of the noise level (clean inputs: kept exactly; noisy ones: denoised).
        self_calibrate: at inference, scale what the network adds beyond the input's band
            (and, for clean blurred input, what it restores within it) by gains fitted on
            the input itself (see :mod:`metasrgan.models.calibration`): its guess of the
            missing frequencies is kept only as far as it predicts the input's own outer
            band.  Needs a skip; no parameters (old files load with it).
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
        noise_input: bool = False,
        data_consistency: bool = False,
        self_calibrate: bool = False,
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
        if data_consistency and not uses_sinc_skip(skip, acquisitions):
            raise ValueError("data_consistency needs skip 'sinc', or 'acquisition' with kspace")
        if self_calibrate and skip == "none":
            raise ValueError("self_calibrate needs a skip (the residual is what it scales)")
        self.channels = channels
        self.skip = skip
        self.acquisitions = tuple(acquisitions)
        self.default_acquisition = default_acquisition or (
            self.acquisitions[0] if self.acquisitions else None
        )
        self.upscaler = upscaler
        self.noise_input = noise_input
        self.data_consistency = data_consistency
        self.self_calibrate = self_calibrate
        self.normalization = IntensityNormalization(mean, std)
        self.features = SRResNetFeatures(channels, features, blocks, norm)
        if self.uses_noise:
            self.noise_estimator = NoiseEstimator(channels)
        if noise_input:  # zero at first: a model initialised from one without it is unchanged
            self.noise_embedding = nn.Linear(1, features)
            nn.init.zeros_(self.noise_embedding.weight)
            nn.init.zeros_(self.noise_embedding.bias)
        if data_consistency:  # slope and log-threshold of the trust in the noise level
            self.band_gate = nn.Parameter(torch.tensor(BAND_GATE_START))
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
        noise=None,
        gains=None,
    ) -> torch.Tensor:
        """``x``: ``[B, C, H, W]`` in [0, 1]; returns ``[B, C, H*s_h, W*s_w]`` (not clamped).

        ``noise``: the inputs' noise level (a number or ``[B]``, as :meth:`noise_level`
        gives it) for noise-aware models; None estimates it on each image of ``x``.
        ``gains``: the same for self-calibrated models (:meth:`calibration_gains`)."""
        noise = self.noise_level(x, noise)
        if self.training:  # the training step supervises the estimate (one forward: DDP-safe)
            self.estimated_noise = noise
        feats = self.extract_features(x, noise)
        return self.upscale_features(x, feats, scale, out_shape, acquisition, noise, gains)

    @property
    def uses_noise(self) -> bool:
        """Whether a noise level enters the model (noise input or data consistency)."""
        return self.noise_input or self.data_consistency

    def noise_level(self, x: torch.Tensor, noise=None) -> torch.Tensor | None:
        """``[B]`` noise levels of ``x`` (``noise`` if given), about a fraction of the image
        range, or None when the model uses none.  Tiles, bands and background windows must
        pass the whole image's (the estimate reads the whole image)."""
        if not self.uses_noise:
            return None
        if noise is None:
            return self.noise_estimator(x, self.normalization.encode(x))
        return torch.as_tensor(noise, dtype=x.dtype, device=x.device).expand(x.shape[0])

    def extract_features(self, x: torch.Tensor, noise=None) -> torch.Tensor:
        """The scale-independent part (most of the cost): cache it to zoom one image often."""
        bias = self.noise_bias(x, noise) if self.noise_input else None
        return self.features(self.normalization.encode(x), bias)

    def noise_bias(self, x: torch.Tensor, noise=None) -> torch.Tensor:
        """``[B, F, 1, 1]``: what the noise level adds to the first layer's output."""
        sigma = self.noise_level(x, noise)
        bias = self.noise_embedding((sigma / NOISE_UNIT)[:, None].to(x.dtype))
        return bias[:, :, None, None]

    def upscale_features(
        self,
        x: torch.Tensor,
        feats: torch.Tensor,
        scale,
        out_shape: tuple[int, int] | None = None,
        acquisition: str | None = None,
        noise=None,
        gains=None,
    ) -> torch.Tensor:
        """The rest of :meth:`forward` given ``feats = extract_features(x, noise)``."""
        scale = Scale2d.of(scale)
        out_shape = tuple(out_shape or scale.out_shape(*x.shape[-2:]))
        y = self.residual(feats, scale, out_shape, acquisition)
        return self.combine(x, y, out_shape, acquisition, noise, gains)

    def combine(
        self,
        x: torch.Tensor,
        residual: torch.Tensor,
        out_shape: tuple[int, int],
        acquisition: str | None = None,
        noise=None,
        gains=None,
    ) -> torch.Tensor:
        """The output from the whole image's residual: the skip image plus the residual
        (without the acquired band, for data-consistent k-space models; its parts beyond
        and within the band scaled by their gains, for self-calibrated ones); not local."""
        if self.skip == "none":
            return self.normalization.decode(residual)
        consistent = self.data_consistency and self.skip_method(acquisition) == "sinc"
        calibrated = self.self_calibrate and not self.training
        if consistent or calibrated:
            # residual = g_beyond * (residual - band) + g_band * band, in two passes
            band = acquired_band(residual, tuple(x.shape[-2:]))
            g_beyond = g_band = 1.0
            if calibrated:
                thinned = (out_shape[0] > x.shape[-2], out_shape[1] > x.shape[-1])
                gains = self.calibration_gains(x, acquisition, noise, gains, thinned)
                gains = gains.to(residual.dtype)[:, :, None, None, None]
                g_beyond, g_band = gains[:, 0], gains[:, 1]
            if consistent:
                g_band = 1 - self.band_trust(x, self.noise_level(x, noise))[:, None, None, None]
            scaled = residual if not calibrated else g_beyond * residual  # training: no pass
            residual = torch.addcmul(scaled, g_band - g_beyond, band)
        return self.skip_image(x, tuple(out_shape), acquisition) + residual

    def calibration_gains(
        self,
        x: torch.Tensor,
        acquisition: str | None = None,
        noise=None,
        gains=None,
        thinned: tuple[bool, bool] = (True, True),
    ) -> torch.Tensor:
        """``[B, 2]``: the gains of the residual beyond the band of ``x`` and within it
        (``gains``, a pair or ``[B, 2]``, if given), fitted on ``x`` itself for upscaling the
        ``thinned`` axes (:mod:`~metasrgan.models.calibration`); ones for models that do
        not self-calibrate.  Tiles and windows must pass the whole image's."""
        if gains is not None:
            gains = torch.as_tensor(gains, dtype=x.dtype, device=x.device)
            return gains.reshape(-1, 2).expand(x.shape[0], 2)
        if not self.self_calibrate:
            return x.new_ones(x.shape[0], 2)
        return gain_from(self.calibration_terms(x, acquisition, noise, thinned)).to(x.dtype)

    def calibration_terms(
        self,
        x: torch.Tensor,
        acquisition: str | None = None,
        noise=None,
        thinned: tuple[bool, bool] = (True, True),
    ) -> torch.Tensor:
        """``[B, 4]`` least-squares terms of each image's gains (sum them over the slices
        of a volume for one pair, then :func:`~metasrgan.models.calibration.gain_from`)."""
        acquisition = self.resolve_acquisition(acquisition)
        return fit_terms(self, x, acquisition, self.noise_level(x, noise), thinned)

    def band_trust(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """In [0, 1]: how far the acquired band of ``x`` is kept as it is (1) rather than
        left to the network (0).  A band is what the scanner measured only if it is clean
        (low noise level) and unfiltered (an apodisation filter lowers
        :func:`~metasrgan.degradations.fourier.band_edge_ratio`), so the trust is the product
        of two logistic functions: a learned one of the log noise level and a fixed one
        (:data:`FILTER_RULE`) of the log ratio.  Partial Fourier goes undetected: its band is
        trusted like a plain matrix's."""
        noise_slope, log_noise = self.band_gate
        ratio_slope, log_ratio = FILTER_RULE
        ratio = band_edge_ratio(x).to(sigma.dtype)
        clean = torch.sigmoid(-noise_slope * (torch.log(sigma + 1e-4) - log_noise))
        unfiltered = torch.sigmoid(ratio_slope * (torch.log(ratio + 1e-8) - log_ratio))
        return clean * unfiltered

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
        # data consistency needs the scanner's own (periodic) band; else mirror the borders
        sinc = "sinc" if self.data_consistency else "sinc-mirror"
        if self.skip == "acquisition":
            skip = ACQUISITIONS[self.resolve_acquisition(acquisition)].skip
            return sinc if skip == "sinc" else skip
        return sinc if self.skip == "sinc" else self.skip

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
