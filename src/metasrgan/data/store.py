"""Training slices in one memory-mapped file, shared by every process that trains.

A stage's 2D slices (any sizes) are written once, by rank 0, as one flat float32 ``.npy``
plus an index of shapes; every DDP rank and every DataLoader worker maps the same file, so
the operating system's page cache holds one copy however many processes read it (RAM does
not grow with the number of ranks), and a process touches only the pages of the slices it
crops from.  Pickling a store (a spawned worker) sends its path, never its pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class SliceStore(Sequence):
    """Read-only 2D float32 slices from the files :meth:`write` made (``store[i]`` is a view)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        index = np.load(_index_path(self.path))
        if index.ndim != 2 or index.shape[1] != 2:
            raise ValueError(f"{_index_path(self.path)}: not a slice index")
        self.shapes = [(int(h), int(w)) for h, w in index]
        sizes = [h * w for h, w in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._data: np.ndarray | None = None

    @classmethod
    def write(cls, path: str | os.PathLike, images: Sequence[np.ndarray]) -> SliceStore:
        """Write ``images`` (2D arrays) to ``path`` (``.npy``) and its index, atomically."""
        if not images:
            raise ValueError("no training images: check the data sources of the config")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(images):
            if np.ndim(im) != 2:
                raise ValueError(f"training image {i} is not 2D: shape {np.shape(im)}")
        shapes = np.array([np.shape(im) for im in images], dtype=np.int64)
        total = int(shapes.prod(axis=1).sum())
        tmp = path.with_name(path.name + ".part")
        flat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total,))
        start = 0
        for image in images:
            size = int(np.size(image))
            flat[start : start + size] = np.asarray(image, dtype=np.float32).ravel()
            start += size
        flat.flush()
        del flat
        index_tmp = _index_path(tmp)
        np.save(index_tmp, shapes)
        os.replace(index_tmp, _index_path(path))
        os.replace(tmp, path)
        return cls(path)

    def remove(self) -> None:
        """Delete the files (mappings that are open stay valid until they are closed)."""
        self._data = None
        for p in (self.path, _index_path(self.path)):
            p.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        if self._data is None:  # mapped on first use, in the process that reads
            self._data = np.load(self.path, mmap_mode="r")
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        return self._data[start:stop].reshape(self.shapes[i])

    def __getstate__(self) -> dict:
        return {"path": self.path, "shapes": self.shapes, "offsets": self.offsets}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _data=None)


def _index_path(path: Path) -> Path:
    name = path.name[:-4] if path.name.endswith(".npy") else path.name
    return path.with_name(name + "-index.npy")
