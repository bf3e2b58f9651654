"""Fourier resampling: what a scanner's acquisition matrix and its zero-filled interpolation do.

An MR image is the inverse FFT of the k-space samples the scanner acquired.  A smaller
acquisition matrix keeps only the central frequencies (k-space truncation); consoles then
show the image interpolated by zero-filling k-space ("ZIP", sinc interpolation).  Both are
one operation here, :func:`fourier_resize`, which keeps the project's pixel-centre rule: new
sample ``j`` of ``m`` sits at old continuous index ``(j + 0.5) * n / m - 0.5`` (a phase ramp
moves the FFT's corner-aligned grid there), so truncating to ``m`` and zero-filling back to
``n`` returns exactly the low-pass part of the original.

``boundary="periodic"`` is the scanner's model (the field of view wraps); ``"mirror"``
extends the image by reflection first (a DCT-like interpolation without wrap-around edges),
used for patches and for the network's skip connection.

Every resize but partial Fourier is linear and real, one matrix per axis, so it runs as two
real matrix products with cached matrices (:func:`axis_matrix`, built by the FFT code itself
from the identity): on this project's 2-core CPU 3-20x faster than the complex128 FFTs at
256-2048 pixels a side (``benchmarks/README.md``, "Fourier resampling"), within 4e-6 of them
in float32 and 1e-12 in float64.  Partial Fourier (a magnitude) and very large axes take the
FFTs.
"""

from __future__ import annotations

import math
import threading

import cachetools
import torch

WINDOWS = ("none", "hamming", "tukey", "fermi")
"""k-space apodisation filters consoles offer against Gibbs ringing."""


def _window(kind: str, u: torch.Tensor) -> torch.Tensor:
    """Filter value at normalised frequency ``u`` in [-1, 1] (1 = edge of the kept band)."""
    a = u.abs()
    if kind == "none":
        return torch.ones_like(a)
    if kind == "hamming":
        return 0.54 + 0.46 * torch.cos(math.pi * a)
    if kind == "tukey":  # flat centre, cosine taper over the outer half (alpha = 0.5)
        alpha = 0.5
        taper = 0.5 * (1 + torch.cos(math.pi * (a - (1 - alpha)) / alpha))
        return torch.where(a <= 1 - alpha, torch.ones_like(a), taper)
    if kind == "fermi":  # Fermi-Dirac roll-off at 90% of the band, width 4%
        return torch.sigmoid(-(a - 0.9) / 0.04)
    raise ValueError(f"unknown k-space window {kind!r}; choose from {', '.join(WINDOWS)}")


def _freqs(n: int, device) -> torch.Tensor:
    return torch.fft.fftfreq(n, 1.0 / n, device=device, dtype=torch.float64).round()


def _resize_axis(
    x: torch.Tensor,
    m: int,
    dim: int,
    boundary: str,
    window: str = "none",
    partial_fourier: float = 1.0,
) -> torch.Tensor:
    """Fourier-resample ``x`` (complex128) to ``m`` samples along ``dim``."""
    n = x.shape[dim]
    if n == m and window == "none" and partial_fourier == 1.0:
        return x
    if boundary == "mirror":
        x = torch.cat([x, x.flip(dim)], dim)
    elif boundary != "periodic":
        raise ValueError(f"boundary must be 'periodic' or 'mirror', got {boundary!r}")
    big_n, big_m = x.shape[dim], (2 * m if boundary == "mirror" else m)
    x = x.movedim(dim, -1)
    spectrum = torch.fft.fft(x, dim=-1)
    f_src = _freqs(big_n, x.device)
    delta = 0.5 * (n / m - 1.0)  # source-pixel shift from the corner grid to the centre rule
    phase = torch.exp(2j * math.pi * f_src * delta / big_n)
    shifted = spectrum * phase
    f_dst = _freqs(big_m, x.device)
    half = min(big_n, big_m) / 2
    out = spectrum.new_zeros(*spectrum.shape[:-1], big_m)
    keep = f_dst.abs() < half
    src_index = (f_dst[keep].long()) % big_n
    out[..., keep] = shifted[..., src_index]
    if min(big_n, big_m) % 2 == 0 and big_n != big_m:
        edge = int(half)
        if big_n < big_m:  # source Nyquist: split into the +/- pair, each with its own phase
            nyq = spectrum[..., big_n // 2] / 2
            out[..., edge] = nyq * complex(math.cos(math.pi * delta), math.sin(math.pi * delta))
            out[..., big_m - edge] = nyq * complex(
                math.cos(math.pi * delta), -math.sin(math.pi * delta)
            )
        else:  # target Nyquist: both source frequencies +/- edge alias onto it
            out[..., big_m // 2] = shifted[..., edge] + shifted[..., big_n - edge]
    if window != "none":
        out = out * _window(window, f_dst / (big_m / 2)).to(out.dtype)
    if partial_fourier < 1.0:  # lines below the cut were never acquired
        cut = big_m / 2 - partial_fourier * big_m
        out = out * (f_dst >= cut).to(out.dtype)
    y = torch.fft.ifft(out, dim=-1) * (big_m / big_n)
    return y[..., :m].movedim(-1, dim)


MATRIX_MAX_ELEMENTS = 1 << 23
"""Largest ``n * m`` of an axis done by a matrix product (32 MiB in float32); the FFTs above."""
MATRIX_CACHE_BYTES = 256 << 20
"""Memory the cached matrices may hold (a 256x256 slice at x4 needs 4 MiB)."""


@cachetools.cached(
    cachetools.LRUCache(MATRIX_CACHE_BYTES, getsizeof=lambda t: t.numel() * t.element_size()),
    lock=threading.Lock(),
)
def axis_matrix(
    n: int, m: int, boundary: str, window: str, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``[m, n]``: the real matrix of resampling one axis from ``n`` to ``m`` samples (the
    FFT resampling applied to the identity, so both paths are one definition).  Made
    outside inference mode, so a matrix cached by an inference call can be used where
    autograd needs it later (adaptation, training in the same process)."""
    with torch.inference_mode(False):
        eye = torch.eye(n, dtype=torch.complex128)
        matrix = _resize_axis(eye, m, -1, boundary, window).real.T
        return matrix.to(dtype=dtype, device=device).contiguous()


def _by_matrices(x: torch.Tensor, shape: tuple[int, int], boundary: str, window: str):
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    y = x.to(dtype)
    (n_h, n_w), (m_h, m_w) = x.shape[-2:], shape
    if n_h != m_h or window != "none":
        y = axis_matrix(n_h, m_h, boundary, window, dtype, x.device) @ y
    if n_w != m_w or window != "none":
        y = y @ axis_matrix(n_w, m_w, boundary, window, dtype, x.device).T
    return x.clone() if y is x else y.to(x.dtype)  # always a new tensor, as the FFTs give


def fourier_resize(
    x: torch.Tensor,
    shape: tuple[int, int],
    boundary: str = "periodic",
    window: str = "none",
    partial_fourier: float = 1.0,
) -> torch.Tensor:
    """Resample ``[..., H, W]`` to ``shape`` by cropping or zero-filling its spectrum.

    ``window`` apodises the kept band on both axes; ``partial_fourier`` (0.5-1] keeps that
    fraction of the vertical (phase-encoding) lines, asymmetrically, like a scanner's partial
    Fourier acquisition; the result is then the magnitude of the complex image.
    """
    if not 0.5 < partial_fourier <= 1.0:
        raise ValueError(f"partial_fourier must be in (0.5, 1], got {partial_fourier}")
    shape = (int(shape[0]), int(shape[1]))
    sizes = zip(x.shape[-2:], shape, strict=True)
    if (
        partial_fourier == 1.0
        and not x.is_complex()
        and all(n * m <= MATRIX_MAX_ELEMENTS for n, m in sizes)
    ):
        return _by_matrices(x, shape, boundary, window)
    return fourier_resize_fft(x, shape, boundary, window, partial_fourier)


def fourier_resize_fft(
    x: torch.Tensor,
    shape: tuple[int, int],
    boundary: str = "periodic",
    window: str = "none",
    partial_fourier: float = 1.0,
) -> torch.Tensor:
    """:func:`fourier_resize` by complex128 FFTs (the definition; the matrices are built by
    it, and partial Fourier and very large axes use it)."""
    dtype = x.dtype
    y = x.to(torch.complex128)
    y = _resize_axis(y, shape[0], -2, boundary, window, partial_fourier)
    y = _resize_axis(y, shape[1], -1, boundary, window)
    out = y.abs() if partial_fourier < 1.0 else y.real
    return out.to(dtype)


def acquired_band(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The part of ``[..., H, W]`` that a matrix of ``shape`` acquires: k-space truncation to
    ``shape`` and zero-filling back (periodic), an orthogonal projection (idempotent)."""
    return fourier_resize(fourier_resize(x, shape), tuple(x.shape[-2:]))


def band_edge_ratio(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B]``: the mean power of the outer quarter of the image's band
    (0.75-1 of Nyquist on either axis) over that of the 0.25-0.5 ring.

    An apodisation filter lowers it (the band edge was attenuated, so the band is not what a
    plain matrix measures), noise raises it (white), anatomy sits between: what tells a
    data-consistent model how far to keep the band.  Partial Fourier hardly moves it (log
    ratios -3.3 to -3.9 at 60-90% on the validation slabs' x2 matrices, plain -2.9 to -3.3)."""
    h, w = x.shape[-2:]
    if h < 4 or w < 4:
        return x.new_ones(x.shape[0])
    t = x.detach().to(torch.float64)
    power = torch.fft.fft2(t - t.mean(dim=(-2, -1), keepdim=True)).abs().square().mean(dim=1)
    fy = torch.fft.fftfreq(h, device=x.device, dtype=torch.float64).abs() * 2
    fx = torch.fft.fftfreq(w, device=x.device, dtype=torch.float64).abs() * 2
    rho = torch.maximum(fy[:, None], fx[None, :])
    outer, middle = rho >= 0.75, (rho >= 0.25) & (rho < 0.5)
    if not middle.any():  # a 4-pixel side has no 0.25-0.5 ring: no evidence of a filter
        return x.new_ones(x.shape[0])
    ratio = power[:, outer].mean(dim=1) / power[:, middle].mean(dim=1).clamp(min=1e-30)
    return ratio.to(x.dtype)
