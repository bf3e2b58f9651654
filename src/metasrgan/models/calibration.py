"""Self-calibrated extrapolation: how far to trust the network's guess beyond the band.

What a network adds beyond the frequencies the input holds is a guess from its training
anatomy (MNI152 and Colin27, human, 1 mm).  On scans unlike them it can be worse than no
guess at all: on the INIA19 macaque it lost 0.6-1.5 dB against zero-filled sinc at x2-x4.
Whether the guess fits a scan can be read off the scan itself, as ZSSR does with its
internal statistics (Shocher et al., CVPR 2018): degrade the input once more by
:data:`CALIBRATION_SCALE` with its own acquisition, let the model restore the input from
that copy, and fit by least squares the gain that its out-of-band part should have had to
match the input's outer band.  The output's out-of-band part is then scaled by that gain,
clipped to [0, 1] (1: the model as trained).

The fit reads only the frequencies the copy lacks, so noise in the input does not bias it:
white noise in those frequencies is independent of the copy the model saw.

Inputs made by a blurring kernel (``bicubic``: a resize kernel; ``thick``: a slice profile)
also get a second gain, for what the network restores inside the band: how strongly the
input was blurred is not told to it (the ``bicubic`` acquisition trains on bicubic, area and
bilinear kernels alike), and the same fit on the copy's band measures it, in [0, 1.5].  Only
on clean input (noise under :data:`WITHIN_NOISE_MAX`): a noisy input's band holds noise that
its copy holds too, which would bias the fit towards undoing the denoising.  k-space input's
band is the scanner's (kept as far as the band trust says): it gets no second gain.

Where the network's guess is right the fits still read less or more than 1, by acquisition
(a thick slice is itself blurred, so its copy's target is too): :data:`REFERENCE_FIT`,
measured on the validation slabs, is divided out.  The gains are two numbers per image,
acquisition and set of upscaled axes, whatever the scale's size, so a volume pass uses one
pair for all its slices and the viewer one per slice.  What it changes, scan by scan:
``benchmarks/bench_self_calibration.py`` and the model card (the same weights uncalibrated
beside).
"""

from __future__ import annotations

import math

import torch

from metasrgan.scale import Scale2d

CALIBRATION_SCALE = 1.5
"""How much smaller the calibration copy is, per thinned axis (whatever the target scale):
x1.5 keeps enough of a small input (a 64-pixel slice) to fit on, and the gain then depends
on the image and its acquisition only."""
REFERENCE_FIT = {"kspace": (1.15, 1.0), "thick": (0.69, 1.07), "bicubic": (0.95, 1.17)}
"""What the fits read, per acquisition, where the network's guess is as good as it gets
(beyond the band, within it): the fitted gain over the best one (against the HR image),
least squares over the validation slabs' slices and scales (``python -m
benchmarks.bench_self_calibration --reference``).  A thick-slice input is itself blurred
along its axis by the slice profile, so the copy's target is blurred where the network
predicts sharp anatomy, and the fit beyond the band reads 0.69 of the gain the guess
deserves; on k-space input it reads a little more than it deserves, and within the band of
blurred input 1.07-1.17 (k-space: not fitted, 1)."""
WITHIN_NOISE_MAX = 0.01
"""The second gain (within the band) is fitted on inputs whose noise level is below this
(1% of the range; the noisy inputs of training and evaluation have 0.5-5%)."""
WITHIN_MAX = 1.5
"""The most the restoration within the band is strengthened."""
MIN_SIDE = 12
"""Copies with a side below this many pixels are too small to fit on: the gain is then 1."""
MAX_SIDE = 256
"""Larger inputs are calibrated on a window of this side around their intensity centroid
(bounded cost and memory; the statistic does not need the whole image)."""


def calibration_window(x: torch.Tensor, thinned: tuple[bool, bool]) -> tuple[torch.Tensor, Scale2d]:
    """The part of ``x`` ``[B, C, H, W]`` the calibration reads and its scale pair (x1.5
    on the ``thinned`` axes): at most :data:`MAX_SIDE` square, sides cut to multiples of 3
    on each thinned axis (x1.5 is 3/2, so the copy has an exact size)."""
    scale = Scale2d.of(tuple(CALIBRATION_SCALE if t else 1.0 for t in thinned))
    h, w = x.shape[-2:]
    if h > MAX_SIDE or w > MAX_SIDE:
        weight = x.detach().float().mean(dim=(0, 1)).clamp(min=0)
        total = weight.sum().clamp(min=1e-12)
        rows = torch.arange(h, dtype=weight.dtype, device=weight.device)
        cols = torch.arange(w, dtype=weight.dtype, device=weight.device)
        cy = float((weight.sum(1) * rows).sum() / total)
        cx = float((weight.sum(0) * cols).sum() / total)
        top = min(max(int(cy) - MAX_SIDE // 2, 0), max(h - MAX_SIDE, 0))
        left = min(max(int(cx) - MAX_SIDE // 2, 0), max(w - MAX_SIDE, 0))
        x = x[..., top : top + MAX_SIDE, left : left + MAX_SIDE]
        h, w = x.shape[-2:]
    dh, dw = h % scale.h.p, w % scale.w.p  # centred, as the evaluation's exact windows
    return x[..., dh // 2 : h - (dh - dh // 2), dw // 2 : w - (dw - dw // 2)], scale


@torch.no_grad()
def fit_terms(
    model, x: torch.Tensor, acquisition: str | None, noise, thinned: tuple[bool, bool]
) -> torch.Tensor:
    """``[B, 4]``: the least-squares numerator and denominator of each image's gain beyond the
    band, then within it (sum them over slices for one pair per volume; see
    :func:`gain_from`; zeros: no evidence).  ``thinned``: which axes the call upscales.
    ``noise``: the input's ``[B]`` noise levels or None (the copy's are ``noise / sqrt(1.5)``
    per thinned axis: exact for k-space truncation of white noise, close for the other
    kernels)."""
    from metasrgan.degradations import ACQUISITIONS, make_chain
    from metasrgan.degradations.fourier import acquired_band

    terms = x.new_zeros(x.shape[0], 4, dtype=torch.float64)
    if acquisition and ACQUISITIONS[acquisition].through_plane and thinned == (False, True):
        x = x.transpose(-2, -1)  # the slice-profile chain thins the vertical axis
        thinned = (True, False)
    window, scale = calibration_window(x, thinned)
    small = scale.in_shape(*window.shape[-2:])
    if not any(thinned) or min(small) < MIN_SIDE:
        return terms
    kind = acquisition or "bicubic"  # unconditioned models: the paper's software resize
    copy = make_chain(kind)(window, small)
    copy_noise = None if noise is None else noise / math.sqrt(scale.h.value * scale.w.value)
    shape = tuple(window.shape[-2:])
    guess = model.residual(model.extract_features(copy, copy_noise), scale, shape, acquisition)
    target = window - model.skip_image(copy, shape, acquisition)
    guess_in, target_in = acquired_band(guess, small), acquired_band(target, small)
    beyond_ref, within_ref = REFERENCE_FIT.get(kind, (1.0, 1.0))
    guess, target = guess - guess_in, target - target_in
    terms[:, 0] = (guess * target).sum(dim=(1, 2, 3)).double() / beyond_ref
    terms[:, 1] = guess.square().sum(dim=(1, 2, 3)).double()
    if ACQUISITIONS[kind].skip != "sinc":  # a blurring kernel's input
        clean = (noise < WITHIN_NOISE_MAX).double() if noise is not None else 1.0
        terms[:, 2] = clean * (guess_in * target_in).sum(dim=(1, 2, 3)).double() / within_ref
        terms[:, 3] = clean * guess_in.square().sum(dim=(1, 2, 3)).double()
    return terms


def gain_from(terms: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` least-squares terms -> ``[..., 2]`` gains: beyond the band in [0, 1],
    within it in [0, :data:`WITHIN_MAX`] (1 where there was no evidence)."""
    gains = []
    for k, top in ((0, 1.0), (2, WITHIN_MAX)):
        num, den = terms[..., k], terms[..., k + 1]
        gain = (num / den.clamp(min=1e-30)).clamp(0.0, top)
        gains.append(torch.where(den > 0, gain, torch.ones_like(gain)))
    return torch.stack(gains, dim=-1)
