"""Small bounded caches: volumes by id, slice features, and recent zoom results."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """A thread-safe least-recently-used cache bounded by entry count and by total size.

    ``sizeof`` gives an entry's size (bytes); the newest entry is always kept, even alone
    over the budget, so a single large scan can still be viewed.
    """

    def __init__(
        self,
        max_items: int,
        max_bytes: int | None = None,
        sizeof: Callable[[V], int] | None = None,
    ):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._sizeof = sizeof or (lambda _v: 0)
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > 1 and (
                len(self._items) > self.max_items
                or (self.max_bytes is not None and self.nbytes > self.max_bytes)
            ):
                self._items.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(self._sizeof(v) for v in self._items.values())

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)
