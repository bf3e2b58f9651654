"""The paper's "crop with the most information", defined precisely.

Definition: among all axis-aligned windows of the requested ``(height, width)`` that lie
inside the image, the one whose **sum of intensities is largest**.  Skull-stripped slices
are about half black background, so this is the window that holds the most brain.  Ties
(equal sums, e.g. several windows holding the whole brain) go to the top-most window, then
the left-most one (the first in row-major order).  Along an axis where the image is smaller
than the window, the window is the whole axis.

The sums of every window come from one integral image (summed-area table) in float64, so
the search costs ``O(H * W)`` whatever the window size.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]
"""``(top, left, height, width)`` in pixels."""


def window_sums(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Sum of every ``size`` window: entry ``[t, l]`` is ``image[t:t+h, l:l+w].sum()``.

    ``size`` is clipped to the image's shape first.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"the crop works on 2D images, got shape {image.shape}")
    h = min(int(size[0]), image.shape[0])
    w = min(int(size[1]), image.shape[1])
    integral = np.zeros((image.shape[0] + 1, image.shape[1] + 1), dtype=np.float64)
    integral[1:, 1:] = image.cumsum(axis=0).cumsum(axis=1)
    return integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]


def max_information_crop(image: np.ndarray, size: tuple[int, int]) -> Box:
    """``(top, left, height, width)`` of the ``size`` window with the largest intensity sum.

    See the module docstring for the definition and the tie rule.  ``height``/``width`` are
    ``size`` clipped to the image (the whole axis where the image is smaller).
    """
    if int(size[0]) < 1 or int(size[1]) < 1:
        raise ValueError(f"crop size must be positive, got {tuple(size)}")
    image = np.asarray(image)
    sums = window_sums(image, size)
    h = min(int(size[0]), image.shape[0])
    w = min(int(size[1]), image.shape[1])
    # Sums equal in exact arithmetic can differ by rounding in the integral image: treat
    # values within a tiny tolerance of the maximum as ties, then take the first.
    best = sums.max()
    tol = 1e-12 * max(1.0, float(np.abs(image).sum()))
    top, left = np.unravel_index(int(np.argmax(sums >= best - tol)), sums.shape)
    return int(top), int(left), h, w


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """``image[top:top+height, left:left+width]`` (a view)."""
    top, left, height, width = (int(v) for v in box)
    if top < 0 or left < 0 or top + height > image.shape[0] or left + width > image.shape[1]:
        raise ValueError(f"box {tuple(box)} does not fit an image of shape {image.shape[:2]}")
    return image[top : top + height, left : left + width]


def crop_max_information(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The maximal-information crop itself."""
    return crop(image, max_information_crop(image, size))
