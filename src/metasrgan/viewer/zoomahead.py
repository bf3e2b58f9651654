"""The zoom look-ahead: finished ``zoom.bin`` bodies of the current slice at other scales.

Once a slice's features are cached, one zoom costs only the Meta-Upscale (tens of ms on two
busy cores, a few hundred at long-period scales such as x3.7), which is still above the
page's budget of 50 ms per slider step.  So in idle time the server computes the slice at the
slider's other stops (the tenths 1.1-4.0, the trained scales), nearest to the scale on screen
first, and keeps the *finished response bodies* (the 16-bit Meta-SRGAN and bicubic images
``zoom.bin`` sends) in a byte-bounded LRU cache: a later zoom to one of them is a memory
copy.  Each job is one scale (one unit of :class:`metasrgan.viewer.jobs.ComputePool`'s
look-ahead, which runs only while no request computes and is replaced by every new request,
so a move to another slice or volume reprioritises it).

Keys hold everything the body depends on: the model, the volume (its id is a hash of the
data), the axis, the slice, the snapped scale per axis and the acquisition.  The noise level
the model conditions on is estimated from the slice itself, and windowing is done by the page,
so neither is a parameter.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from metasrgan.scale import Scale2d
from metasrgan.viewer import engine
from metasrgan.viewer.cache import LRUCache

if TYPE_CHECKING:
    from metasrgan.viewer.server import Viewer, ZoomRequest

ZOOM_CACHE_MB = 256
"""Bytes of prefetched bodies kept: one 256x256 slice at all 30 stops is about 57 MB, so about
four slices' worth; a 512x512 slice's stops alone (228 MB) nearly fill it."""
MAX_ENTRIES = 2048
"""Also an entry count bound (each entry is charged at least 128 KiB)."""
STOPS = tuple(round(1.0 + 0.1 * k, 1) for k in range(1, 31))
"""The scales computed ahead: the slider's tenths above x1 (x1 itself costs nothing)."""
WAIT_FOR_RUNNING_S = 10.0
"""How long a request waits for the look-ahead job already computing its very key."""


@dataclass(frozen=True)
class ZoomBytes:
    """A finished ``zoom.bin`` body and what its headers report besides the request's own."""

    body: bytes
    shape: tuple[int, int]
    timings: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return len(self.body) + 256

    @classmethod
    def of(cls, result: engine.ZoomResult, body: bytes) -> ZoomBytes:
        """From a computed zoom (the timings are those of that computation)."""
        timings = {
            "metasrgan": round(result.metasrgan_ms, 2),
            "features": round(result.features_ms, 2),
            "features_cached": result.features_cached,
            "bicubic": round(result.bicubic_ms, 2),
        }
        return cls(body, tuple(result.metasrgan.shape), timings)


@functools.lru_cache(maxsize=256)
def stops_near(scale: Scale2d, stops: tuple[float, ...] = STOPS) -> tuple[Scale2d, ...]:
    """The stops other than ``scale``, nearest first (upwards first on a tie); none for a
    per-axis zoom (the page's two sliders have no single line to walk along)."""
    if not scale.symmetric:
        return ()
    here = scale.h.fraction  # exact: 2.2 and 1.8 are equally near 2
    snapped = {engine.snap_scales(s, s) for s in stops}
    snapped.discard(scale)
    return tuple(sorted(snapped, key=lambda s: (abs(s.h.fraction - here), -s.h.fraction)))


class ZoomAhead:
    """The cache of prefetched bodies, and the one job (key) being computed right now."""

    def __init__(self, max_bytes: int, max_items: int = MAX_ENTRIES):
        self.cache: LRUCache[ZoomBytes] = LRUCache(max_items, max_bytes, lambda z: z.nbytes)
        self._lock = threading.Lock()
        self._running: tuple[Hashable, threading.Event] | None = None
        self.done = 0
        self.hits = 0

    def get(self, key: Hashable) -> ZoomBytes | None:
        """The prefetched body, waiting for it if the look-ahead is computing this key."""
        with self._lock:
            running = self._running
        if running is not None and running[0] == key:
            running[1].wait(WAIT_FOR_RUNNING_S)
        found = self.cache.get(key)
        if found is not None:
            self.count_hit()
        return found

    def count_hit(self) -> None:
        with self._lock:
            self.hits += 1

    def job(
        self,
        key: Hashable,
        compute: Callable[[Callable[[], bool]], ZoomBytes],
        skip: Callable[[], bool],
    ) -> Callable[[Callable[[], bool]], None]:
        """A look-ahead unit: ``compute`` one scale (it raises :class:`engine.Cancelled`
        before starting the upscale if a request arrived) unless ``skip()`` says the result
        is already at hand."""

        def run(cancelled: Callable[[], bool]) -> None:
            if key in self.cache or skip():
                return
            event = threading.Event()
            with self._lock:
                self._running = (key, event)
            try:
                self.cache.put(key, compute(cancelled))
                with self._lock:
                    self.done += 1
            finally:
                with self._lock:
                    self._running = None
                event.set()

        return run

    def stats(self) -> dict:
        return {
            "zoom_prefetched": len(self.cache),
            "zoom_prefetch_bytes": self.cache.nbytes,
            "zoom_prefetch_max_bytes": self.cache.max_bytes,
            "zoom_prefetch_done": self.done,
            "zoom_prefetch_hits": self.hits,
        }


def interleave(first: list, second: list, every: int = 4) -> list:
    """``every`` items of ``first``, then one of ``second``, and so on: the zoom stops of the
    slice on screen without starving the neighbouring slices' features (slice changes)."""
    out, rest = [], list(second)
    for k, item in enumerate(first):
        if k and k % every == 0 and rest:
            out.append(rest.pop(0))
        out.append(item)
    return out + rest


def zoom_jobs(viewer: Viewer, req: ZoomRequest | None) -> list:
    """One look-ahead unit per zoom stop of ``req``'s slice not at hand yet, nearest first,
    as many as fit in the cache together (later ones would evict the nearer ones)."""
    from metasrgan.viewer.server import MAX_OUTPUT_PIXELS

    ahead = viewer.zoom_ahead
    if req is None or ahead is None:
        return []
    vol, axis, index, acq = req.volume, req.axis, req.index, req.acquisition
    jobs, planned = [], 0
    for scale in stops_near(req.scale):
        pixels = int(np.prod(scale.out_shape(*vol.slice_shape(axis))))
        planned += 4 * pixels + 256  # two 16-bit images: ZoomBytes.nbytes
        if pixels > MAX_OUTPUT_PIXELS or planned > ahead.cache.max_bytes:
            break
        key = (vol.id, axis, index, scale, acq)
        zkey = viewer.zoom_key(key)
        if key in viewer.results or zkey in ahead.cache:
            continue

        def compute(cancelled: Callable[[], bool], scale: Scale2d = scale) -> ZoomBytes:
            features = viewer.slice_features(vol, axis, index, cancelled)
            if cancelled():  # a request arrived: it goes first, this unit comes back later
                raise engine.Cancelled
            entry = viewer.render(vol, axis, index, scale, acq, features)
            return ZoomBytes.of(entry.result, entry.raw)

        skip = functools.partial(viewer.results.__contains__, key)  # a request computed it
        jobs.append((("zoom", *zkey), ahead.job(zkey, compute, skip)))
    return jobs
