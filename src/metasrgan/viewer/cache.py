"""Bounded caches for the viewer (volumes, slice features, zoom results): cachetools' LRU.

Each cache is bounded by bytes *and* by entry count: an entry is charged at least
``max_bytes / max_items``, so at most ``max_items`` fit.  An entry larger than the whole
budget is charged the budget: it evicts everything else and stays alone, so one large scan
can still be viewed.  cachetools is not thread-safe; one lock per cache makes it so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache as _LRU

V = TypeVar("V")


class LRUCache(Generic[V]):
    """A thread-safe least-recently-used cache bounded by entry count and total bytes."""

    def __init__(self, max_items: int, max_bytes: int, sizeof: Callable[[V], int] = len):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._sizeof = sizeof
        floor = max(1, max_bytes // max(1, max_items))
        self._cache: _LRU = _LRU(
            maxsize=max_bytes, getsizeof=lambda v: min(max(int(sizeof(v)), floor), max_bytes)
        )
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            return self._cache.get(key)

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._cache[key] = value

    def fits(self, nbytes: int, entries: int = 1) -> bool:
        """Whether ``entries`` more entries of ``nbytes`` each fit without evicting anything."""
        with self._lock:
            floor = max(1, self.max_bytes // max(1, self.max_items))
            return self._cache.currsize + entries * max(nbytes, floor) <= self.max_bytes

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(int(self._sizeof(v)) for v in self._cache.values())

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._cache

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def keys(self) -> list[Hashable]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._cache.keys())
