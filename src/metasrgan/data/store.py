"""Training slices in one memory-mapped file, shared by every process that trains.

A stage's 2D slices (any sizes) are written once, by rank 0, as one flat float32 ``.npy``
plus an index of shapes and offsets; every DDP rank and every DataLoader worker maps the
same file, so the operating system's page cache holds one copy however many processes read
it (RAM does not grow with the number of ranks), and a process touches only the pages of
the slices it crops from.  A slice listed more than once (a data source's ``repeat``) is
stored once.  Pickling a store (a spawned worker) sends its path, never its pixels.
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
        if index.ndim != 2 or index.shape[1] != 3:
            raise ValueError(f"{_index_path(self.path)}: not a slice index")
        self.shapes = [(int(h), int(w)) for h, w, _ in index]
        self.offsets = index[:, 2].astype(np.int64)
        self._data: np.ndarray | None = None

    @classmethod
    def write(cls, path: str | os.PathLike, images: Sequence[np.ndarray]) -> SliceStore:
        """Write ``images`` (2D arrays) to ``path`` (``.npy``) and its index, atomically; an
        array object listed more than once is written once."""
        if not images:
            raise ValueError("no training images: check the data sources of the config")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(images):
            if np.ndim(im) != 2:
                raise ValueError(f"training image {i} is not 2D: shape {np.shape(im)}")
        offset_of: dict[int, int] = {}  # id(array) -> where it starts: listed twice, written once
        total = 0
        for image in images:
            if id(image) not in offset_of:
                offset_of[id(image)] = total
                total += int(np.size(image))
        tmp = path.with_name(path.name + ".part")
        flat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total,))
        for image in {id(im): im for im in images}.values():
            start = offset_of[id(image)]
            flat[start : start + np.size(image)] = np.asarray(image, dtype=np.float32).ravel()
        flat.flush()
        del flat
        index_tmp = _index_path(tmp)
        shapes = np.array([np.shape(im) for im in images], dtype=np.int64).reshape(-1, 2)
        offsets = np.array([offset_of[id(im)] for im in images], dtype=np.int64)
        np.save(index_tmp, np.column_stack([shapes, offsets]))
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
        (h, w), start = self.shapes[i], int(self.offsets[i])
        return self._data[start : start + h * w].reshape(h, w)

    def __getstate__(self) -> dict:
        return {"path": self.path, "shapes": self.shapes, "offsets": self.offsets}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _data=None)


def _index_path(path: Path) -> Path:
    name = path.name[:-4] if path.name.endswith(".npy") else path.name
    return path.with_name(name + "-index.npy")
