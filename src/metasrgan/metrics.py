"""PSNR and SSIM with an explicit data range, optionally inside a mask.

MRI intensities are floats, so the range is never guessed: scikit-image infers 2 for float
images and 255 is only right for 8-bit pictures.  Both functions take ``data_range`` as a
required argument (1.0 for the [0, 1] images the models see).

Both are scikit-image's (``peak_signal_noise_ratio``; ``structural_similarity`` with
``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=R``: Wang et
al. (2004), an 11x11 Gaussian window, population covariances, ``K1 = 0.01``, ``K2 = 0.03``,
the mean taken over the map without its 5-pixel border).  What is added here: the
required ``data_range``, checks, and masks (PSNR over the mask pixels; SSIM's map averaged
over the mask pixels of that same interior), which scikit-image does not offer.

Colour images are compared on their luminance: :func:`luminance` returns a grayscale image
unchanged and converts RGB to ITU-R BT.601 Y.
"""

from __future__ import annotations

import numpy as np

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scikit-image's, fixed for gaussian weights
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5 -> an 11x11 window

BT601 = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of R, G, B."""


def luminance(image: np.ndarray, data_range: float | None = None, studio: bool = False):
    """The image's luminance: grayscale as is, RGB (last axis of 3) as BT.601 Y.

    ``studio=False`` gives ``Y = 0.299 R + 0.587 G + 0.114 B`` in the input's range.
    ``studio=True`` gives the MATLAB ``rgb2ycbcr`` convention that most super-resolution
    papers report on: ``Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255`` for RGB in
    [0, 1], scaled by ``data_range`` (which it then needs).
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(
            f"expected a 2D grayscale image or an H x W x 3 RGB image, got shape {image.shape}"
        )
    if image.shape[-1] == 1:
        return image[..., 0]
    if not studio:
        return image @ np.asarray(BT601)
    if data_range is None:
        raise ValueError("luminance(studio=True) needs the RGB data_range")
    unit = image / data_range
    y = 16.0 / 255.0 + unit @ (np.asarray([65.481, 128.553, 24.966]) / 255.0)
    return y * data_range


def _check(sr: np.ndarray, hr: np.ndarray, data_range: float, mask) -> tuple:
    sr = np.asarray(sr, dtype=np.float64)
    hr = np.asarray(hr, dtype=np.float64)
    if sr.shape != hr.shape:
        raise ValueError(f"images differ in shape: {sr.shape} vs {hr.shape}")
    if sr.ndim != 2:
        raise ValueError(f"metrics take 2D images (use luminance() first), got {sr.shape}")
    if not (np.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != hr.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {hr.shape}")
    return sr, hr, float(data_range), mask


def psnr(sr: np.ndarray, hr: np.ndarray, data_range: float, mask=None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(R^2 / MSE)``, MSE over ``mask`` if given.

    Identical images give ``inf``; an empty mask raises ValueError.
    """
    sr, hr, data_range, mask = _check(sr, hr, data_range, mask)
    if mask is None:
        from skimage.metrics import peak_signal_noise_ratio

        with np.errstate(divide="ignore"):  # identical images: inf, as documented
            return float(peak_signal_noise_ratio(hr, sr, data_range=data_range))
    if not mask.any():
        raise ValueError("the mask is empty: there are no pixels to compare")
    diff = (sr - hr)[mask]
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim_map(sr: np.ndarray, hr: np.ndarray, data_range: float) -> np.ndarray:
    """The full SSIM map (same shape as the images; its border is unreliable)."""
    sr, hr, data_range, _ = _check(sr, hr, data_range, None)
    return _ssim(sr, hr, data_range)[1]


def _ssim(sr: np.ndarray, hr: np.ndarray, data_range: float) -> tuple[float, np.ndarray]:
    from skimage.metrics import structural_similarity

    window = 2 * SSIM_RADIUS + 1
    if min(sr.shape) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window}, got {sr.shape}")
    mean, full = structural_similarity(
        sr, hr, data_range=data_range, gaussian_weights=True, sigma=SSIM_SIGMA,
        use_sample_covariance=False, full=True,
    )  # fmt: skip
    return float(mean), full


def ssim(sr: np.ndarray, hr: np.ndarray, data_range: float, mask=None) -> float:
    """Mean structural similarity (Wang et al. 2004; see the module docstring).

    The mean excludes the ``SSIM_RADIUS``-pixel border, as scikit-image does; with a mask it
    is the mean over the mask pixels inside that interior.
    """
    sr, hr, data_range, mask = _check(sr, hr, data_range, mask)
    mean, full = _ssim(sr, hr, data_range)
    if mask is None:
        return mean
    r = SSIM_RADIUS
    inside = mask[r:-r, r:-r]
    if not inside.any():
        raise ValueError("the mask has no pixels away from the image border")
    return float(full[r:-r, r:-r][inside].mean(dtype=np.float64))
