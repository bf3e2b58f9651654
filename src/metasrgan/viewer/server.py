"""The viewer's state and app factory: the model, bounded caches, the compute pool.

The model is loaded once, when the app is made (:mod:`metasrgan.viewer.served_model`).
Volumes, slice features and recent zoom results live in bounded caches
(:mod:`metasrgan.viewer.cache`); computations run on a bounded pool
(:mod:`metasrgan.viewer.jobs`) with features of neighbouring slices and the zoom stops of
the slice on screen (:mod:`metasrgan.viewer.zoomahead`) computed ahead in idle time; the
routes are in :mod:`metasrgan.viewer.routes` and :mod:`metasrgan.viewer.browser_compute`,
assembled by :mod:`metasrgan.viewer.app`.  Every error answers JSON ``{"error":
message}`` and the server carries on.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field

import torch
from fastapi import FastAPI
from torch import nn

from metasrgan.scale import Scale2d
from metasrgan.viewer import engine, images, security, zoomahead
from metasrgan.viewer.cache import LRUCache
from metasrgan.viewer.jobs import ComputePool
from metasrgan.viewer.sequencing import RequestSequencer
from metasrgan.viewer.served_model import load_model, model_info
from metasrgan.viewer.volumes import Volume, load_sample, sample_names
from metasrgan.viewer.zoomahead import ZoomAhead, ZoomBytes

DEFAULT_SAMPLE = "colin27_val"
DEFAULT_MAX_UPLOAD_MB = 256
LOOKAHEAD_SLICES = 4
"""Slices on each side of the one on screen whose features are computed ahead."""
MAX_OUTPUT_PIXELS = 4096 * 4096
"""The largest zoom one request may ask for (a 1024-pixel slice at x4)."""
ZOOM_CACHE_ENV = "METASRGAN_VIEWER_ZOOM_CACHE_MB"
"""Overrides :data:`zoomahead.ZOOM_CACHE_MB` (0: no zoom look-ahead; benchmarks' baseline)."""


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may cost: bytes received, and voxels decoded (checked from the file's
    header before decoding, so a gzip bomb is refused having inflated only its header)."""

    max_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024**2
    max_voxels: int = 64 * 1024**2


class NotLoaded(LookupError):
    """A volume id the server does not hold (never loaded, or evicted from the cache)."""


class Superseded(Exception):
    """A newer request of the same client arrived before this one was computed."""


@dataclass(frozen=True)
class ZoomRequest:
    """One zoom, validated: what the routes share (see ``routes.zoom_params``)."""

    volume: Volume
    axis: str
    index: int
    scale: Scale2d
    acquisition: str | None
    client: str
    seq: int

    @property
    def key(self) -> tuple:
        return (self.volume.id, self.axis, self.index, self.scale, self.acquisition)


@dataclass
class CachedZoom:
    """A computed zoom: the images, their 16-bit form, PNGs made when first asked for."""

    result: engine.ZoomResult
    raw: bytes
    png: dict[str, bytes] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        r = self.result
        return (
            r.metasrgan.nbytes + r.bicubic.nbytes + len(self.raw) + sum(map(len, self.png.values()))
        )

    def png_of(self, kind: str) -> bytes:
        if kind not in self.png:
            r = self.result
            if kind == "difference":
                self.png[kind] = images.difference_png(r.difference)
            else:
                self.png[kind] = images.gray_png(getattr(r, kind))
        return self.png[kind]


class Viewer:
    """The server's state: the model, the caches, the sequencer and the compute pool."""

    def __init__(
        self,
        model: nn.Module,
        model_info: dict,
        limits: UploadLimits,
        workers: int = 2,
        lookahead: int = LOOKAHEAD_SLICES,
        zoom_cache_mb: float = zoomahead.ZOOM_CACHE_MB,
    ):
        self.model = model
        self.model_info = model_info
        self.limits = limits
        self.lookahead = lookahead
        self.token = security.new_token()
        self.volumes: LRUCache[Volume] = LRUCache(8, 2 * 1024**3, lambda v: v.data.nbytes)
        self.features: LRUCache[torch.Tensor] = LRUCache(
            48, 768 * 1024**2, lambda t: t.element_size() * t.nelement()
        )
        self.results: LRUCache[CachedZoom] = LRUCache(64, 384 * 1024**2, lambda z: z.nbytes)
        self.gains: LRUCache[tuple] = LRUCache(4096, 4096, lambda g: 1)  # self-calibration's
        self.noise: LRUCache[torch.Tensor | None] = LRUCache(4096, 4096, lambda n: 1)
        self.zoom_ahead = ZoomAhead(int(zoom_cache_mb * 1024**2)) if zoom_cache_mb > 0 else None
        self.model_key = (model_info.get("path"), model_info.get("name"), id(model))
        self.sequencer = RequestSequencer()
        self.pool = ComputePool(workers)
        self.counts = {"computed": 0, "result_cache_hits": 0, "dropped_after_features": 0}
        self._count_lock = threading.Lock()
        self._last_index: dict[tuple[str, str], int] = {}
        self.default_sample: str | None = None
        self._wanted: dict[str, tuple] = {}  # the slice each client asked for last

    # ------------------------------------------------------------------ volumes
    def add(self, volume: Volume) -> Volume:
        self.volumes.put(volume.id, volume)
        return volume

    def volume(self, vol_id: str) -> Volume:
        volume = self.volumes.get(vol_id)
        if volume is None:
            raise NotLoaded(
                f"volume {vol_id!r} is not loaded (the server may have restarted or dropped "
                "it to save memory); load the scan again"
            )
        return volume

    def sample(self, name: str) -> Volume:
        cached = self.volumes.get(f"sample-{name}")
        return cached if cached is not None else self.add(load_sample(name))

    # ------------------------------------------------------------------ zoom
    def _count(self, key: str) -> None:
        with self._count_lock:
            self.counts[key] += 1

    def zoom(self, req: ZoomRequest) -> tuple[CachedZoom, bool]:
        """The zoom of one slice (computed, or from the cache); raises :class:`Superseded`."""
        _remember(self._wanted, req.client, req.key[:3])
        with self.sequencer.turn(req.client, req.seq) as current:
            if not current:
                raise Superseded
            entry, from_cache = self._cached_or_computed(req)
        self.look_ahead(req.volume, req.axis, req.index, req.client, req)
        return entry, from_cache

    def zoom_bin(self, req: ZoomRequest) -> tuple[ZoomBytes, bool]:
        """The ``zoom.bin`` body: a recent result, a prefetched body, or computed now."""
        _remember(self._wanted, req.client, req.key[:3])
        with self.sequencer.turn(req.client, req.seq) as current:
            if not current:
                raise Superseded
            ahead = None
            if self.zoom_ahead is not None and req.key not in self.results:
                ahead = self.zoom_ahead.get(self.zoom_key(req.key))
            if ahead is not None:
                self._count("result_cache_hits")
                found = ahead, True
            else:
                entry, from_cache = self._cached_or_computed(req)
                found = ZoomBytes.of(entry.result, entry.raw), from_cache
        self.look_ahead(req.volume, req.axis, req.index, req.client, req)
        return found

    def zoom_bin_at_hand(self, req: ZoomRequest) -> tuple[ZoomBytes, bool] | None:
        """:meth:`zoom_bin` for a body already in memory, without waiting for anything (the
        route answers it on the event loop: no thread hop); None: take :meth:`zoom_bin`."""
        entry = self.results.get(req.key)
        body = ZoomBytes.of(entry.result, entry.raw) if entry is not None else None
        if body is None and self.zoom_ahead is not None:
            body = self.zoom_ahead.cache.get(self.zoom_key(req.key))
        if body is None:
            return None
        with self.sequencer.try_turn(req.client, req.seq) as current:
            if current is None:
                return None
            if not current:
                raise Superseded
        self._count("result_cache_hits")
        if entry is None:
            self.zoom_ahead.count_hit()
        self.view(req)
        return body, True

    def view(self, req: ZoomRequest) -> None:
        """The client shows ``req`` (from its own cache): only the look-ahead follows."""
        _remember(self._wanted, req.client, req.key[:3])
        self.look_ahead(req.volume, req.axis, req.index, req.client, req)

    def zoom_key(self, key: tuple) -> tuple:
        """A result's key with the model in it: it names everything a body depends on."""
        return (self.model_key, *key)

    def _cached_or_computed(self, req: ZoomRequest) -> tuple[CachedZoom, bool]:
        cached = self.results.get(req.key)
        if cached is not None:
            self._count("result_cache_hits")
            return cached, True
        entry = self.pool.run(self._compute, req)
        self.results.put(req.key, entry)
        return entry, False

    def slice_features(self, volume: Volume, axis: str, index: int, cancelled) -> torch.Tensor:
        key = (volume.id, axis, index)
        features = self.features.get(key)
        if features is None:
            x = torch.from_numpy(volume.unit_slice(axis, index))[None, None]
            noise = self.slice_noise(volume, axis, index)
            features = engine.extract_features(self.model, x.to(_device(self.model)), cancelled,
                                               noise=noise)  # fmt: skip
            self.features.put(key, features)
        return features

    def slice_gains(self, volume: Volume, axis: str, index: int, scale, acquisition):
        """A self-calibrated model's calibration gains for this slice, acquisition and set of
        upscaled axes (what every zoom of the slice shares: computed once); else None."""
        if not getattr(self.model, "self_calibrate", False):
            return None
        thinned = (scale.h.p > scale.h.q, scale.w.p > scale.w.q)
        key = (volume.id, axis, index, acquisition, thinned)
        gains = self.gains.get(key)
        if gains is None:
            x = torch.from_numpy(volume.unit_slice(axis, index))[None, None]
            noise = self.slice_noise(volume, axis, index)
            gains = engine.calibration_gains(self.model, x.to(_device(self.model)), acquisition,
                                             thinned, noise)  # fmt: skip
            self.gains.put(key, gains)
        return gains

    def slice_noise(self, volume: Volume, axis: str, index: int) -> torch.Tensor | None:
        """A noise-aware model's noise level of this slice (estimated once; else None)."""
        key = (volume.id, axis, index)
        if key not in self.noise:
            x = torch.from_numpy(volume.unit_slice(axis, index))[None, None]
            self.noise.put(key, engine.noise_level(self.model, x.to(_device(self.model))))
        return self.noise.get(key)

    def _compute(self, req: ZoomRequest) -> CachedZoom:
        features, features_ms = None, 0.0
        trivial = req.scale.h.p == req.scale.h.q and req.scale.w.p == req.scale.w.q
        if not trivial and engine.supports_feature_cache(self.model):
            cached = (req.volume.id, req.axis, req.index) in self.features
            t0 = time.perf_counter()
            try:
                # stop only when the client moved to another slice: a newer zoom of this
                # slice needs the same features
                features = self.slice_features(
                    req.volume,
                    req.axis,
                    req.index,
                    lambda: self._wanted.get(req.client) != req.key[:3],
                )
            except engine.Cancelled:
                self._count("dropped_after_features")
                raise Superseded from None
            features_ms = 0.0 if cached else (time.perf_counter() - t0) * 1e3
            if not cached and not self.sequencer.is_current(req.client, req.seq):
                # the slider moved on while the features ran: keep them, skip the rest
                self._count("dropped_after_features")
                raise Superseded
        self._count("computed")
        vol, acq = req.volume, req.acquisition
        return self.render(vol, req.axis, req.index, req.scale, acq, features, features_ms)

    def render(self, volume, axis, index, scale, acquisition, features, features_ms=0.0):
        """The zoom from the slice's features: the one computation requests and the zoom
        look-ahead share, so a prefetched body is byte for byte the one a request makes."""
        unit = volume.unit_slice(axis, index)
        gains = noise = None
        if features is not None:
            gains = self.slice_gains(volume, axis, index, scale, acquisition)
            noise = self.slice_noise(volume, axis, index)
        result = engine.zoom(self.model, unit, scale, features, acquisition, gains, noise)
        if features_ms:
            result.features_cached = False
            result.features_ms = features_ms
            result.metasrgan_ms += features_ms
        raw = images.uint16_bytes(result.metasrgan) + images.uint16_bytes(result.bicubic)
        return CachedZoom(result, raw)

    def look_ahead(
        self, volume: Volume, axis: str, index: int, client: str, req: ZoomRequest | None = None
    ) -> None:
        """Queue the features of the neighbouring slices, nearest first, in the direction the
        user is moving first, as many as the feature cache holds besides the one on screen;
        with ``req``, the zoom stops of the slice on screen too, interleaved with them."""
        if not self.lookahead or not engine.supports_feature_cache(self.model):
            return
        last = self._last_index.get((client, volume.id), index)
        _remember(self._last_index, (client, volume.id), index)
        step = -1 if index < last else 1
        h, w = volume.slice_shape(axis)
        per_slice = 64 * h * w * 4  # float32 features of this model (64 channels)
        room = min(self.features.max_items, self.features.max_bytes // per_slice) - 2
        # the slice itself first: a zoom at x1 computes no features, the next zoom needs them
        order = [index]
        if not volume.is_2d:
            order += [
                index + sign * d for d in range(1, self.lookahead + 1) for sign in (step, -step)
            ]
        count = volume.slice_counts()[axis]
        wanted = [i for i in order if 0 <= i < count][: max(0, room)]
        zoom_in, acquisition = Scale2d.of(2.0), req.acquisition if req else None

        def prefetch(cancelled, i):  # the features, then the gains every zoom of it shares
            self.slice_features(volume, axis, i, cancelled)
            self.slice_gains(volume, axis, i, zoom_in, acquisition)

        jobs = []
        for i in wanted:
            if (volume.id, axis, i) not in self.features:
                jobs.append(((volume.id, axis, i), lambda c, i=i: prefetch(c, i)))
        here = jobs[:1] if jobs and jobs[0][0][2] == index else []
        self.pool.look_ahead(
            here + zoomahead.interleave(zoomahead.zoom_jobs(self, req), jobs[len(here) :])
        )


def _remember(table: dict, key, value, limit: int = 1024) -> None:
    """``table[key] = value``, forgetting the oldest keys beyond ``limit`` (many clients)."""
    table.pop(key, None)
    table[key] = value
    while len(table) > limit:
        del table[next(iter(table))]


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters())).device


def create_app(
    model_path: str | os.PathLike | None = None,
    *,
    model: nn.Module | None = None,
    device: str = "cpu",
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    limits: UploadLimits | None = None,
    preload_sample: str | None = DEFAULT_SAMPLE,
    allowed_hosts: tuple[str, ...] = security.LOOPBACK,
    workers: int = 2,
    lookahead: int = LOOKAHEAD_SLICES,
    zoom_cache_mb: float | None = None,
) -> FastAPI:
    """The FastAPI app.  ``model`` (an already built network) overrides ``model_path``;
    ``zoom_cache_mb`` bounds the zoom look-ahead (None: ``$METASRGAN_VIEWER_ZOOM_CACHE_MB``
    or :data:`zoomahead.ZOOM_CACHE_MB`; 0 turns it off; ``lookahead=0`` turns both off)."""
    from metasrgan.viewer.app import install

    if model is None:
        model, info = load_model(model_path, device)
    else:
        model = model.eval()
        untrained = bool((getattr(model, "metadata", None) or {}).get("untrained"))
        info = model_info(model, None, untrained)
    engine.warm_up(model)
    limits = limits or UploadLimits(max_bytes=int(max_upload_mb * 1024 * 1024))
    if zoom_cache_mb is None:
        zoom_cache_mb = float(os.environ.get(ZOOM_CACHE_ENV, zoomahead.ZOOM_CACHE_MB))
    viewer = Viewer(model, info, limits, workers, lookahead, zoom_cache_mb)
    viewer.default_sample = preload_sample if preload_sample in sample_names() else None
    if viewer.default_sample:
        volume = viewer.sample(viewer.default_sample)
        axis, index = volume.default_view()
        first = ZoomRequest(volume, axis, index, Scale2d.of(2), None, "startup", 0)
        viewer.zoom(first)  # the page's first view is ready

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        viewer.pool.start()
        yield
        viewer.pool.close()

    app = FastAPI(
        title="metasrgan viewer",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.viewer = viewer
    install(app)
    app.add_middleware(security.LocalOnly, allowed_hosts=allowed_hosts, token=viewer.token)
    return app
