"""The viewer's HTTP API: one ``APIRouter`` under ``/api``, one shared set of zoom parameters.

- ``GET info``: the model, the bundled samples, the limits, the token for uploads.
- ``POST samples/{name}``: load a bundled sample; returns the volume's description.
- ``POST volumes?filename=NAME`` with the file as the raw body (and the token): an upload.
- ``GET volumes/{id}``: a loaded volume's description (slices, spacing and orientation
  letters per view...).
- ``GET volumes/{id}/slice.png`` / ``slice.bin`` ``?axis=&index=``: the input slice, 8-bit
  PNG or 16-bit raw.
- ``GET volumes/{id}/upscaled.nii.gz?axis=&scale_h=&scale_w=``: the whole volume upscaled
  as the view shows it (through :func:`metasrgan.api.upscale`).
- The zoom family, all taking :func:`zoom_params` (``volume, axis, index, scale`` or
  ``scale_h``/``scale_w``, ``acquisition``, ``client``, ``seq``); ``409`` when a newer
  request of the same client superseded this one:
  ``GET zoom`` (JSON with PNG data URLs and timings), ``GET zoom.bin`` (Meta-SRGAN and
  bicubic as 16-bit raw, the page's fast path; shape, scale and timings in headers),
  ``GET zoom/{kind}.png`` and ``GET zoom/{kind}.nii.gz`` (downloads of one result);
  ``GET lookahead`` (204: the page shows this view from its own cache, so the server's
  look-ahead follows it; see :mod:`metasrgan.viewer.zoomahead`).
- ``GET stats``: counters for tests and benchmarks.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as FastAPIPath
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from metasrgan.viewer import engine, images
from metasrgan.viewer.server import (
    MAX_OUTPUT_PIXELS,
    CachedZoom,
    Superseded,
    Viewer,
    ZoomRequest,
)
from metasrgan.viewer.volumes import (
    SUFFIXES,
    ScanError,
    ScanTooLarge,
    Volume,
    load_volume,
    sample_names,
)

KINDS = ("metasrgan", "bicubic", "difference")
VOLUME_ID = "a loaded volume's id (``sample-NAME`` for bundled samples)"
EXAMPLE_ID = "sample-colin27_val"


async def get_viewer(request: Request) -> Viewer:
    return request.app.state.viewer


async def no_store(response: Response) -> None:
    """API answers are computed for the moment: never cached by the browser."""
    response.headers["Cache-Control"] = "no-store"


# Dependencies are ``async``: light checks run on the event loop, not each on a worker
# thread (a thread hop costs milliseconds on a busy machine).
router = APIRouter(prefix="/api", dependencies=[Depends(no_store)])
ViewerDep = Annotated[Viewer, Depends(get_viewer)]
VolumeId = Annotated[str, FastAPIPath(max_length=128, description=VOLUME_ID, examples=[EXAMPLE_ID])]


async def zoom_params(
    viewer: ViewerDep,
    volume: str = Query(..., max_length=128, description=VOLUME_ID, examples=[EXAMPLE_ID]),
    axis: str = Query(..., max_length=16, description="sagittal, coronal or axial"),
    index: int = Query(..., description="slice index along the axis", examples=[6]),
    scale: float = Query(2.0, description="the zoom of both axes (1-4)"),
    scale_h: float | None = Query(None, description="vertical zoom (overrides scale)"),
    scale_w: float | None = Query(None, description="horizontal zoom (overrides scale)"),
    acquisition: str | None = Query(None, max_length=32, description="for conditioned models"),
    client: str = Query("anonymous", max_length=64, description="the page's id"),
    seq: int = Query(0, ge=0, le=2**53, description="increases with each request"),
) -> ZoomRequest:
    """The zoom every endpoint of the family shares, validated before any work."""
    vol = viewer.volume(volume)
    vol.check(axis, index)
    try:
        if scale_h is None and scale_w is None:
            snapped = engine.snap_scale(scale, engine.MAX_SCALE)
            scale2d = engine.snap_scales(float(snapped), float(snapped))
        else:
            scale2d = engine.snap_scales(
                scale if scale_h is None else scale_h, scale if scale_w is None else scale_w
            )
    except ValueError as err:
        raise ScanError(str(err)) from None
    if acquisition is not None and acquisition not in engine.acquisitions_of(viewer.model):
        known = ", ".join(engine.acquisitions_of(viewer.model)) or "none: it is not conditioned"
        raise ScanError(f"acquisition {acquisition!r} is not one the model takes ({known})")
    out_h, out_w = scale2d.out_shape(*vol.slice_shape(axis))
    if out_h * out_w > MAX_OUTPUT_PIXELS:
        raise ScanTooLarge(
            f"a {out_h} x {out_w} zoom is more than the {MAX_OUTPUT_PIXELS:,} pixels one request "
            "may ask for"
        )
    return ZoomRequest(vol, axis, index, scale2d, acquisition, client, seq)


ZoomDep = Annotated[ZoomRequest, Depends(zoom_params)]


def _zoom(viewer: Viewer, req: ZoomRequest, fn=None) -> tuple[CachedZoom, bool] | JSONResponse:
    """``viewer.zoom`` (or ``fn``), a 409 answer when a newer request superseded it."""
    try:
        return (fn or viewer.zoom)(req)
    except Superseded:
        latest = viewer.sequencer.latest(req.client)
        body = {"error": "superseded by a newer request", "seq": req.seq, "latest": latest}
        return JSONResponse(body, status_code=409)


def _superseded(_req: ZoomRequest):
    raise Superseded


def _timings(entry: CachedZoom, t0: float) -> dict:
    r = entry.result
    return {
        "metasrgan": round(r.metasrgan_ms, 2),
        "features": round(r.features_ms, 2),
        "features_cached": r.features_cached,
        "bicubic": round(r.bicubic_ms, 2),
        "request": round((time.perf_counter() - t0) * 1e3, 2),
    }


def _scale_info(req: ZoomRequest) -> dict:
    s = req.scale
    return {
        "scale": engine.scale_text(s),
        "scale_value": round(float(np.sqrt(s.h.value * s.w.value)), 6),
        "scale_h": s.h.value,
        "scale_w": s.w.value,
    }


# ---------------------------------------------------------------------- model and volumes


@router.get("/info")
def api_info(viewer: ViewerDep):
    return {
        "model": viewer.model_info,
        "samples": sample_names(),
        "default_sample": viewer.default_sample,
        "token": viewer.token,
        "limits": {
            "max_upload_bytes": viewer.limits.max_bytes,
            "max_voxels": viewer.limits.max_voxels,
            "max_output_pixels": MAX_OUTPUT_PIXELS,
            "scale_min": engine.MIN_SCALE,
            "scale_max": engine.MAX_SCALE,
            "axis_scale_max": engine.MAX_AXIS_SCALE,
            "scale_max_denominator": engine.MAX_DENOMINATOR,
            "formats": list(SUFFIXES),
        },
    }


@router.post("/samples/{name}")
def api_sample(name: str, viewer: ViewerDep):
    return viewer.sample(name).describe()


@router.post("/volumes")
async def api_upload(
    request: Request,
    viewer: ViewerDep,
    filename: str = Query("upload", max_length=255),
):
    limit = viewer.limits.max_bytes
    declared = request.headers.get("content-length")
    too_big = f"the file is larger than the upload limit of {limit / 1024**2:.0f} MB"
    if declared and declared.isdigit() and int(declared) > limit:
        return JSONResponse({"error": too_big}, status_code=413)
    name = Path(filename.replace("\\", "/")).name or "upload"
    suffix = next((s for s in SUFFIXES if name.lower().endswith(s)), "")
    if not suffix and "." in name.strip("."):  # no ending at all may still be DICOM
        ending = name.rsplit(".", 1)[1][:16]
        raise ScanError(
            f"{name}: unsupported file type '.{ending}'; the viewer reads "
            f"{', '.join(SUFFIXES)} files (DICOM: one file per upload)"
        )
    with tempfile.TemporaryDirectory(prefix="metasrgan-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"  # never the client's name: no path tricks
        size = 0
        with open(path, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return JSONResponse({"error": too_big}, status_code=413)
                out.write(chunk)
        if size == 0:
            raise ScanError(f"{name}: the file is empty")
        max_voxels = viewer.limits.max_voxels
        volume = await run_in_threadpool(load_volume, path, None, name, "upload", max_voxels)
    return viewer.add(volume).describe()


@router.get("/volumes/{vol_id}")
def api_volume(vol_id: VolumeId, viewer: ViewerDep):
    return viewer.volume(vol_id).describe()


async def slice_params(
    vol_id: VolumeId,
    viewer: ViewerDep,
    axis: Annotated[str, Query(max_length=16, examples=["axial"])],
    index: Annotated[int, Query(examples=[6])],
) -> tuple[Volume, str, int]:
    volume = viewer.volume(vol_id)
    volume.check(axis, index)
    return volume, axis, index


SliceDep = Annotated[tuple, Depends(slice_params)]


@router.get("/volumes/{vol_id}/slice.png")
def api_slice_png(where: SliceDep):
    volume, axis, index = where
    return Response(images.gray_png(volume.unit_slice(axis, index)), media_type="image/png")


@router.get("/volumes/{vol_id}/slice.bin")
def api_slice_bin(where: SliceDep):
    volume, axis, index = where
    unit = volume.unit_slice(axis, index)
    headers = {"X-Shape": f"{unit.shape[0]},{unit.shape[1]}"}
    return Response(
        images.uint16_bytes(unit), media_type="application/octet-stream", headers=headers
    )


@router.get("/volumes/{vol_id}/upscaled.nii.gz")
def api_upscaled_volume(
    vol_id: VolumeId,
    viewer: ViewerDep,
    axis: str = Query(..., max_length=16),
    scale_h: float = Query(2.0),
    scale_w: float = Query(2.0),
):
    """The whole volume upscaled in the view's plane, through :func:`metasrgan.api.upscale`."""
    from metasrgan.viewer.downloads import upscaled_volume

    volume = viewer.volume(vol_id)
    volume.check(axis, 0)
    try:
        scale = engine.snap_scales(scale_h, scale_w)
    except ValueError as err:
        raise ScanError(str(err)) from None
    data = viewer.pool.run(upscaled_volume, viewer.model, volume, axis, scale)
    name = f"{Path(volume.name).name.split('.')[0]}_metasrgan.nii.gz"
    disposition = f'attachment; filename="{name}"'
    return Response(
        data, media_type="application/gzip", headers={"Content-Disposition": disposition}
    )


# ---------------------------------------------------------------------- zoom


@router.get("/zoom")
def api_zoom(req: ZoomDep, viewer: ViewerDep):
    t0 = time.perf_counter()
    done = _zoom(viewer, req)
    if isinstance(done, JSONResponse):
        return done
    entry, from_cache = done
    r = entry.result
    diff = r.difference
    return {
        "seq": req.seq,
        "volume": req.volume.id,
        "axis": req.axis,
        "index": req.index,
        **_scale_info(req),
        "input_shape": list(r.input_shape),
        "output_shape": list(r.metasrgan.shape),
        "from_cache": from_cache,
        "timings_ms": _timings(entry, t0),
        "difference": {
            "max_abs": float(np.abs(diff).max()) if diff.size else 0.0,
            "display_range": images.DIFF_RANGE,
        },
        "images": {kind: images.data_url(entry.png_of(kind)) for kind in KINDS},
    }


@router.get("/zoom.bin")
async def api_zoom_bin(req: ZoomDep, viewer: ViewerDep):
    """A body in memory (a recent or prefetched result) is answered on the event loop; one
    to compute or wait for goes to a worker thread."""
    t0 = time.perf_counter()
    try:
        done = viewer.zoom_bin_at_hand(req)
    except Superseded:
        done = _zoom(viewer, req, _superseded)
    if done is None:
        done = await run_in_threadpool(_zoom, viewer, req, viewer.zoom_bin)
    if isinstance(done, JSONResponse):
        return done
    body, from_cache = done  # a prefetched body (zoomahead) or a result's
    h, w = body.shape
    timings = {**body.timings, "request": round((time.perf_counter() - t0) * 1e3, 2)}
    headers = {
        "X-Shape": f"{h},{w}",
        "X-Zoom": json.dumps({**_scale_info(req), "seq": req.seq, "from_cache": from_cache}),
        "X-Timings": json.dumps(timings),
    }
    return Response(body.body, media_type="application/octet-stream", headers=headers)


@router.get("/lookahead", status_code=204)
def api_lookahead(req: ZoomDep, viewer: ViewerDep) -> Response:
    """Where the page is (it showed a zoom from its own cache): the look-ahead is
    reprioritised for that view; nothing is computed for the request itself."""
    viewer.view(req)
    return Response(status_code=204)


@router.get("/zoom/{kind}.png")
def api_zoom_png(kind: str, req: ZoomDep, viewer: ViewerDep):
    if kind not in KINDS:
        raise HTTPException(404, f"no image kind {kind!r}; use one of {', '.join(KINDS)}")
    done = _zoom(viewer, req)
    if isinstance(done, JSONResponse):
        return done
    entry, from_cache = done
    r = entry.result
    ms = {"metasrgan": r.metasrgan_ms, "bicubic": r.bicubic_ms, "difference": 0.0}[kind]
    headers = {
        "X-Scale": engine.scale_text(req.scale),
        "X-Compute-Ms": f"{ms:.2f}",
        "X-Features-Cached": str(r.features_cached).lower(),
        "X-From-Cache": str(from_cache).lower(),
        "Content-Disposition": f'inline; filename="{_download_name(req, kind, "png")}"',
    }
    return Response(entry.png_of(kind), media_type="image/png", headers=headers)


@router.get("/zoom/{kind}.nii.gz")
def api_zoom_nifti(kind: str, req: ZoomDep, viewer: ViewerDep):
    """One zoomed slice in the scan's units, placed in space (the slice's own affine)."""
    from metasrgan.viewer.downloads import slice_nifti

    if kind not in ("metasrgan", "bicubic"):
        raise HTTPException(404, f"no NIfTI of {kind!r}; use metasrgan or bicubic")
    done = _zoom(viewer, req)
    if isinstance(done, JSONResponse):
        return done
    entry, _ = done
    data = slice_nifti(req.volume, req.axis, req.index, req.scale, getattr(entry.result, kind))
    disposition = f'attachment; filename="{_download_name(req, kind, "nii.gz")}"'
    return Response(
        data, media_type="application/gzip", headers={"Content-Disposition": disposition}
    )


def _download_name(req: ZoomRequest, kind: str, ext: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in req.volume.name.split(".")[0])
    scale = engine.scale_text(req.scale).replace("/", "-")
    return f"{stem}_{req.axis}{req.index}_x{scale}_{kind}.{ext}"


@router.get("/stats")
def api_stats(viewer: ViewerDep):
    return {
        **viewer.counts,
        "superseded": viewer.sequencer.superseded,
        "volumes": len(viewer.volumes),
        "features_cached": len(viewer.features),
        "features_bytes": viewer.features.nbytes,
        "results_cached": len(viewer.results),
        "pending": viewer.pool.pending,
        "lookahead_done": viewer.pool.lookahead_done,
        "lookahead_interrupted": viewer.pool.lookahead_interrupted,
        "lookahead_queued": len(viewer.pool.queued_lookahead()),
        "lookahead_running": viewer.pool.running_lookahead,
        **(viewer.zoom_ahead.stats() if viewer.zoom_ahead else {}),
    }
