"""PNG encoding of the viewer's images: grayscale for scans, a diverging map for differences."""

from __future__ import annotations

import base64
import io

import numpy as np

DIFF_RANGE = 0.1
"""A difference of +-10% of the display window saturates the difference colours."""


def gray_png(unit: np.ndarray) -> bytes:
    """An image in [0, 1] as an 8-bit grayscale PNG."""
    from PIL import Image

    pixels = np.clip(np.rint(np.asarray(unit, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    return _encode(Image.fromarray(pixels, mode="L"))


def difference_png(diff: np.ndarray, full_range: float = DIFF_RANGE) -> bytes:
    """Meta-SRGAN minus bicubic: black where equal, orange brighter, blue darker."""
    from PIL import Image

    t = np.clip(np.asarray(diff, dtype=np.float32) / full_range, -1.0, 1.0)
    pos, neg = np.clip(t, 0, 1), np.clip(-t, 0, 1)
    rgb = np.stack([pos * 255 + neg * 40, pos * 140 + neg * 140, neg * 255], axis=-1)
    return _encode(Image.fromarray(np.rint(rgb).clip(0, 255).astype(np.uint8), mode="RGB"))


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _encode(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # speed over size: it only crosses loopback
    return buf.getvalue()


def uint16_bytes(unit: np.ndarray) -> bytes:
    """An image in [0, 1] quantised to 16 bits, row-major little-endian (the page's fast
    path: no PNG encoding or decoding, window/level applied in the browser)."""
    pixels = np.clip(np.asarray(unit, dtype=np.float32), 0.0, 1.0) * 65535.0 + 0.5
    return pixels.astype("<u2").tobytes()
