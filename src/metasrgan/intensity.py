"""Intensity mapping between a scan's units and the model's [0, 1] range, and back.

The common convention of MRI tools: percentiles 0.5 / 99.5 of the non-zero voxels map to
0 / 1.  The mapping is kept so outputs return to the input's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IntensityMap:
    """``unit = (x - low) / (high - low)``; :meth:`invert` maps back."""

    low: float
    high: float

    @classmethod
    def fit(cls, data: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> IntensityMap:
        data = np.asarray(data)
        if not np.isfinite(data).all():
            raise ValueError("image contains NaN or Inf values")
        nonzero = data[data != 0]
        values = nonzero if nonzero.size else data.ravel()
        if values.size == 0:
            raise ValueError("image is empty")
        low, high = np.percentile(values, [lower, upper])
        low = min(float(low), 0.0) if data.min() >= 0 else float(low)
        high = float(high)
        if high <= low:
            high = float(values.max())
        if high <= low:
            raise ValueError("image is constant; there is nothing to super-resolve")
        return cls(low, high)

    def apply(self, data: np.ndarray, clip: bool = True) -> np.ndarray:
        unit = (np.asarray(data, dtype=np.float32) - self.low) / (self.high - self.low)
        return np.clip(unit, 0.0, 1.0) if clip else unit

    def invert(self, unit: np.ndarray) -> np.ndarray:
        return (np.asarray(unit, dtype=np.float32) * (self.high - self.low) + self.low).astype(
            np.float32
        )
