"""The viewer's HTTP API (FastAPI) and the static page.

The model is loaded once, when the app is made.  Volumes, slice features and recent zoom
results live in bounded caches.  Every error a user can cause (a bad upload, a slice out of
range, an evicted volume) answers JSON ``{"error": message}`` and the server carries on.

API (all under ``/api``):

- ``GET info``: the model (and whether it is untrained), the bundled samples, the limits.
- ``POST samples/{name}``: load a bundled sample; returns the volume's description.
- ``POST volumes?filename=NAME`` with the file as the raw body: load an upload.
- ``GET volumes/{id}``: a loaded volume's description (slice counts per axis...).
- ``GET volumes/{id}/slice.png?axis=&index=``: the input slice, mapped to 8 bits.
- ``GET zoom?volume=&axis=&index=&scale=&client=&seq=``: Meta-SRGAN, bicubic and their
  difference as PNG data URLs, with timings; ``409`` when a newer request of the same
  client superseded this one before it was computed.
- ``GET zoom/{kind}.png?...``: one of those images as a PNG, timings in ``X-*`` headers.
- ``GET stats``: counters (computed, superseded, cached) for tests and benchmarks.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

import torch
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from torch import nn

from metasrgan.viewer import engine, images
from metasrgan.viewer.cache import LRUCache
from metasrgan.viewer.sequencing import RequestSequencer
from metasrgan.viewer.volumes import (
    SUFFIXES,
    ScanError,
    Volume,
    load_sample,
    load_volume,
    sample_names,
)

DEFAULT_SAMPLE = "colin27_val"
DEFAULT_MAX_UPLOAD_MB = 256
STATIC = Path(str(resources.files("metasrgan") / "viewer" / "static"))
KINDS = ("metasrgan", "bicubic", "difference")


class NotLoaded(LookupError):
    """A volume id the server does not hold (never loaded, or evicted from the cache)."""


class Superseded(Exception):
    """A newer request of the same client arrived before this one was computed."""


@dataclass
class CachedZoom:
    """A computed zoom, encoded once and served to both zoom endpoints."""

    result: engine.ZoomResult
    png: dict[str, bytes]
    encode_ms: float
    max_abs_difference: float


class Viewer:
    """The server's state: the model, the caches and the request sequencer."""

    def __init__(self, model: nn.Module, model_info: dict, max_upload_bytes: int):
        self.model = model
        self.model_info = model_info
        self.max_upload_bytes = max_upload_bytes
        self.volumes: LRUCache[Volume] = LRUCache(8, 2 * 1024**3, lambda v: v.data.nbytes)
        self.features: LRUCache[torch.Tensor] = LRUCache(
            16, 512 * 1024**2, lambda t: t.element_size() * t.nelement()
        )
        self.results: LRUCache[CachedZoom] = LRUCache(
            32, 256 * 1024**2, lambda z: sum(len(p) for p in z.png.values())
        )
        self.sequencer = RequestSequencer()
        self.compute_lock = threading.Lock()  # one inference at a time: 2 cores, no thrashing
        self.counts = {"computed": 0, "result_cache_hits": 0, "dropped_after_features": 0}
        self._count_lock = threading.Lock()

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

    def zoom(
        self, vol_id: str, axis: str, index: int, scale: float, client: str, seq: int
    ) -> tuple[CachedZoom, bool]:
        """The zoom of one slice (computed, or from the cache); raises :class:`Superseded`."""
        volume = self.volume(vol_id)
        fraction = engine.snap_scale(scale)
        key = (vol_id, axis, index, fraction)
        with self.sequencer.turn(client, seq) as current:
            if not current:
                raise Superseded
            cached = self.results.get(key)
            if cached is not None:
                self._count("result_cache_hits")
                return cached, True
            unit = volume.unit_slice(axis, index)
            with self.compute_lock:
                if not self.sequencer.is_current(client, seq):
                    self.sequencer.count_superseded()
                    raise Superseded
                result = self._compute(key, unit, fraction, client, seq)
            entry = _encode(result)  # outside the lock: another client may compute meanwhile
            self.results.put(key, entry)
            return entry, False

    def _compute(self, key, unit, fraction: Fraction, client: str, seq: int) -> engine.ZoomResult:
        feat_key = key[:3]
        features = self.features.get(feat_key)
        features_ms = 0.0
        if features is None and fraction != 1 and engine.supports_feature_cache(self.model):
            t0 = time.perf_counter()
            x = torch.from_numpy(unit)[None, None].to(_device(self.model))
            features = engine.extract_features(self.model, x)
            features_ms = (time.perf_counter() - t0) * 1e3
            self.features.put(feat_key, features)
            if not self.sequencer.is_current(client, seq):
                # the slider moved on while the features ran: keep them, skip the rest
                self._count("dropped_after_features")
                raise Superseded
        self._count("computed")
        result, _ = engine.zoom(self.model, unit, fraction, features)
        if features_ms:
            result.features_cached = False
            result.features_ms = features_ms
            result.metasrgan_ms += features_ms
        return result


def _encode(result: engine.ZoomResult) -> CachedZoom:
    t0 = time.perf_counter()
    diff = result.difference
    png = {
        "metasrgan": images.gray_png(result.metasrgan),
        "bicubic": images.gray_png(result.bicubic),
        "difference": images.difference_png(diff),
    }
    encode_ms = (time.perf_counter() - t0) * 1e3
    max_abs = float(abs(diff).max()) if diff.size else 0.0
    return CachedZoom(result, png, encode_ms, max_abs)


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters())).device


def load_model(model_path: str | os.PathLike | None, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The model and what the page shows about it (untrained models are flagged)."""
    from metasrgan.inference import UntrainedModelWarning, load, shipped_model_path
    from metasrgan.registry import count_parameters

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UntrainedModelWarning)
        model = load(model_path, device)
    untrained = any(issubclass(w.category, UntrainedModelWarning) for w in caught)
    meta = dict(getattr(model, "metadata", {}) or {})
    untrained = untrained or bool(meta.get("untrained"))
    path = model_path or shipped_model_path()
    spec = meta.get("model") or {}
    info = {
        "name": spec.get("name", type(model).__name__) if isinstance(spec, dict) else str(spec),
        "path": str(path) if path else None,
        "untrained": untrained,
        "parameters": count_parameters(model),
        "feature_cache": engine.supports_feature_cache(model),
        "warning": (
            "UNTRAINED model: no trained model is installed, so the Meta-SRGAN images are "
            "meaningless. Train one or start the server with --model."
            if untrained
            else None
        ),
    }
    return model, info


def create_app(
    model_path: str | os.PathLike | None = None,
    *,
    model: nn.Module | None = None,
    device: str = "cpu",
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    preload_sample: str | None = DEFAULT_SAMPLE,
) -> FastAPI:
    """The FastAPI app.  ``model`` (an already built network) overrides ``model_path``."""
    if model is None:
        model, info = load_model(model_path, device)
    else:
        model = model.eval()
        info = {
            "name": type(model).__name__,
            "path": None,
            "untrained": bool((getattr(model, "metadata", None) or {}).get("untrained")),
            "parameters": sum(p.numel() for p in model.parameters()),
            "feature_cache": engine.supports_feature_cache(model),
            "warning": None,
        }
    engine.warm_up(model)
    viewer = Viewer(model, info, int(max_upload_mb * 1024 * 1024))
    if preload_sample and preload_sample in sample_names():
        volume = viewer.sample(preload_sample)
        axis, index = volume.default_view()
        viewer.zoom(volume.id, axis, index, 2.0, "startup", 0)  # the page's first view is ready

    app = FastAPI(title="metasrgan viewer", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.viewer = viewer

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(ScanError)
    async def _scan_error(_request, err: ScanError):
        return error(400, str(err))

    @app.exception_handler(NotLoaded)
    async def _not_loaded(_request, err: NotLoaded):
        return error(404, str(err.args[0]))

    @app.exception_handler(Exception)
    async def _unexpected(_request, err: Exception):
        return error(500, f"internal error: {type(err).__name__}: {err}")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    def api_info():
        return {
            "model": viewer.model_info,
            "samples": sample_names(),
            "default_sample": preload_sample,
            "limits": {
                "max_upload_bytes": viewer.max_upload_bytes,
                "scale_min": engine.MIN_SCALE,
                "scale_max": engine.MAX_SCALE,
                "scale_max_denominator": engine.MAX_DENOMINATOR,
                "formats": list(SUFFIXES),
            },
        }

    @app.post("/api/samples/{name}")
    def api_sample(name: str):
        return viewer.sample(name).describe()

    @app.post("/api/volumes")
    async def api_upload(request: Request, filename: str = Query("upload", max_length=255)):
        limit = viewer.max_upload_bytes
        declared = request.headers.get("content-length")
        too_big = f"the file is larger than the upload limit of {limit / 1024**2:.0f} MB"
        if declared and declared.isdigit() and int(declared) > limit:
            return error(413, too_big)
        name = Path(filename.replace("\\", "/")).name or "upload"
        suffix = next((s for s in SUFFIXES if name.lower().endswith(s)), "")
        if not suffix and "." in name.strip("."):  # no ending at all may still be DICOM
            ending = name.rsplit(".", 1)[1][:16]
            return error(
                400,
                f"{name}: unsupported file type '.{ending}'; the viewer reads "
                f"{', '.join(SUFFIXES)} files (DICOM: one file per upload)",
            )
        with tempfile.TemporaryDirectory(prefix="metasrgan-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"  # never the client's name: no path tricks
            size = 0
            with open(path, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        return error(413, too_big)
                    out.write(chunk)
            if size == 0:
                return error(400, f"{name}: the file is empty")
            volume = await run_in_threadpool(load_volume, path, None, name, "upload")
        return viewer.add(volume).describe()

    @app.get("/api/volumes/{vol_id}")
    def api_volume(vol_id: str):
        return viewer.volume(vol_id).describe()

    @app.get("/api/volumes/{vol_id}/slice.png")
    def api_slice(vol_id: str, axis: str, index: int):
        unit = viewer.volume(vol_id).unit_slice(axis, index)
        return Response(images.gray_png(unit), media_type="image/png")

    def run_zoom(volume, axis, index, scale, client, seq):
        try:
            scale = float(scale)
            engine.snap_scale(scale)
        except ValueError as err:
            raise ScanError(str(err)) from err
        return viewer.zoom(volume, axis, index, scale, client, seq)

    def superseded(seq: int, client: str) -> JSONResponse:
        latest = viewer.sequencer.latest(client)
        body = {"error": "superseded by a newer request", "seq": seq, "latest": latest}
        return JSONResponse(body, status_code=409)

    @app.get("/api/zoom")
    def api_zoom(
        volume: str,
        axis: str,
        index: int,
        scale: float,
        client: str = Query("anonymous", max_length=64),
        seq: int = 0,
    ):
        t0 = time.perf_counter()
        try:
            entry, from_cache = run_zoom(volume, axis, index, scale, client, seq)
        except Superseded:
            return superseded(seq, client)
        r = entry.result
        return {
            "seq": seq,
            "volume": volume,
            "axis": axis,
            "index": index,
            "scale_requested": scale,
            "scale": f"{r.scale.numerator}/{r.scale.denominator}",
            "scale_value": float(r.scale),
            "input_shape": list(r.input_shape),
            "output_shape": list(r.metasrgan.shape),
            "from_cache": from_cache,
            "timings_ms": {
                "metasrgan": round(r.metasrgan_ms, 2),
                "features": round(r.features_ms, 2),
                "features_cached": r.features_cached,
                "bicubic": round(r.bicubic_ms, 2),
                "encode": round(entry.encode_ms, 2),
                "request": round((time.perf_counter() - t0) * 1e3, 2),
            },
            "difference": {
                "max_abs": entry.max_abs_difference,
                "display_range": images.DIFF_RANGE,
            },
            "images": {kind: images.data_url(entry.png[kind]) for kind in KINDS},
        }

    @app.get("/api/zoom/{kind}.png")
    def api_zoom_png(
        kind: str,
        volume: str,
        axis: str,
        index: int,
        scale: float,
        client: str = Query("anonymous", max_length=64),
        seq: int = 0,
    ):
        if kind not in KINDS:
            return error(404, f"no image kind {kind!r}; use one of {', '.join(KINDS)}")
        try:
            entry, from_cache = run_zoom(volume, axis, index, scale, client, seq)
        except Superseded:
            return superseded(seq, client)
        r = entry.result
        ms = {"metasrgan": r.metasrgan_ms, "bicubic": r.bicubic_ms, "difference": 0.0}[kind]
        headers = {
            "X-Scale": f"{r.scale.numerator}/{r.scale.denominator}",
            "X-Compute-Ms": f"{ms:.2f}",
            "X-Features-Cached": str(r.features_cached).lower(),
            "X-From-Cache": str(from_cache).lower(),
        }
        return Response(entry.png[kind], media_type="image/png", headers=headers)

    @app.get("/api/stats")
    def api_stats():
        return {
            **viewer.counts,
            "superseded": viewer.sequencer.superseded,
            "volumes": len(viewer.volumes),
            "features_cached": len(viewer.features),
            "results_cached": len(viewer.results),
        }

    return app
