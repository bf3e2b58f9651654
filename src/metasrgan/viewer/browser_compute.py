"""What the page needs to run the Meta-Upscale itself (WebGL2), the server's path as reference.

Meta-SRGAN's output is ``clamp(skip(x) + MetaUpscale(features) * std)`` (``clamp(decode(
MetaUpscale(features)))`` without a skip).  The features do not depend on the scale and the
Meta-Upscale at a scale ``p/q`` per axis needs only ``p_h * p_w`` predicted 3x3x64 kernels
(:mod:`metasrgan.scale`'s index rule: output pixel ``i`` reads input ``floor(i*q/p)`` with
the kernel of phase ``i mod p``).  So the page gets, once per slice, the features (float16,
in the layout of a WebGL2 ``RGBA16F`` texture array: 16 layers of 4 channels) and per scale
the kernels (float32, a few KB to a few MB; the model's own prediction, its condition
included) and the skip image (the model's own ``skip_image``, once per slice and scale, so
every skip it knows, bicubic or sinc, is exact); it then runs the 576
multiply-adds per output pixel on the GPU.  The server's ``/api/zoom.bin`` stays the
fallback (software WebGL, as in headless Chromium without a GPU, is slower than the
server's CPU path) and the reference the page is tested against.

- ``GET /api/volumes/{id}/features.bin?axis=&index=``: ``[16, H, W, 4]`` float16.
- ``GET /api/kernels.bin?scale_h=&scale_w=``: ``[p_h * p_w, 9, 64]`` float32 (phase-major,
  taps row by row, then channels), the periods and the skip's constants in ``X-Kernels``.
- ``GET /api/skip.bin?`` the zoom parameters: the skip (unclamped) then bicubic, float32.
"""

from __future__ import annotations

import json
from typing import Annotated

import numpy as np
import torch
from fastapi import APIRouter, Depends, Query, Response
from torch import nn

from metasrgan.models import bicubic_resize
from metasrgan.scale import Scale2d
from metasrgan.viewer import engine
from metasrgan.viewer.routes import SliceDep, ViewerDep, ZoomDep, no_store
from metasrgan.viewer.volumes import ScanError

router = APIRouter(prefix="/api", dependencies=[Depends(no_store)])


def check_model(model: nn.Module) -> None:
    """Refuse models whose Meta-Upscale the page cannot reproduce (then it uses the server)."""
    needed = ("extract_features", "skip_image", "condition", "upscale", "normalization")
    if not all(hasattr(model, name) for name in needed):
        raise ScanError("this model cannot be run in the browser; the server computes its zooms")
    if getattr(model, "channels", 1) != 1 or model.upscale.kernel_size != 3:
        raise ScanError("only one-channel models with 3x3 kernels run in the browser")
    if getattr(model, "data_consistency", False) or getattr(model, "self_calibrate", False):
        # an FFT over the whole output
        raise ScanError("data-consistent and self-calibrated models run on the server; the page "
                        "shows its zooms")  # fmt: skip


@torch.no_grad()
def phase_kernels(model: nn.Module, scale: Scale2d, acquisition: str | None = None) -> np.ndarray:
    """``[p_h * p_w, 9, C]`` float32: the kernel of every phase pair, taps (dy, dx) row by row,
    as the model's own Meta-Upscale predicts them (its condition included)."""
    ref = next(iter(model.parameters()))
    condition = model.condition(scale, acquisition, ref)
    kernels = model.upscale._phase_kernels(scale, ref, condition=condition)  # [ph, pw, 1, C, 3, 3]
    ph, pw, _, channels = kernels.shape[:4]
    kernels = kernels.reshape(ph * pw, channels, 9).permute(0, 2, 1)
    return np.ascontiguousarray(kernels.float().cpu().numpy())


def features_layers(features: torch.Tensor) -> bytes:
    """``[1, 64, H, W]`` -> float16 ``[16, H, W, 4]``: one RGBA texture layer per 4 channels."""
    _, channels, height, width = features.shape
    layers = features[0].reshape(channels // 4, 4, height, width).permute(0, 2, 3, 1)
    return layers.to(torch.float16).contiguous().cpu().numpy().astype("<f2").tobytes()


@router.get("/volumes/{vol_id}/features.bin")
def api_features(where: SliceDep, viewer: ViewerDep):
    check_model(viewer.model)
    volume, axis, index = where
    features = viewer.pool.run(viewer.slice_features, volume, axis, index, lambda: False)
    _, channels, height, width = features.shape
    if channels % 4:
        raise ScanError(f"{channels} feature channels cannot be packed in RGBA layers")
    headers = {"X-Shape": f"{height},{width},{channels}"}
    return Response(
        features_layers(features), media_type="application/octet-stream", headers=headers
    )


@router.get("/kernels.bin")
def api_kernels(
    viewer: ViewerDep,
    scale_h: Annotated[float, Query(description="vertical zoom")] = 2.0,
    scale_w: Annotated[float, Query(description="horizontal zoom")] = 2.0,
    acquisition: Annotated[str | None, Query(max_length=32)] = None,
):
    check_model(viewer.model)
    try:
        scale = engine.snap_scales(scale_h, scale_w)
        kernels = phase_kernels(viewer.model, scale, acquisition)
    except ValueError as err:
        raise ScanError(str(err)) from None
    norm = viewer.model.normalization
    meta = {
        "p_h": scale.h.p,
        "q_h": scale.h.q,
        "p_w": scale.w.p,
        "q_w": scale.w.q,
        "taps": 9,
        "channels": int(kernels.shape[2]),
        "skip": "none" if viewer.model.skip == "none" else "image",
        "mean": float(norm.mean),
        "std": float(norm.std),
    }
    headers = {"X-Kernels": json.dumps(meta)}
    return Response(
        kernels.astype("<f4").tobytes(), media_type="application/octet-stream", headers=headers
    )


@router.get("/skip.bin")
def api_skip(req: ZoomDep, viewer: ViewerDep):
    """The skip image the Meta-Upscale's output is added to (zeros without a skip), then the
    bicubic panel: float32 each, ``X-Shape`` rows and columns."""
    check_model(viewer.model)
    unit = req.volume.unit_slice(req.axis, req.index)
    x = torch.from_numpy(unit)[None, None]
    out_shape = req.scale.out_shape(*unit.shape)
    with torch.no_grad():
        bicubic = bicubic_resize(x, out_shape)[0, 0].numpy()
        skip = viewer.model.skip_image(x, out_shape, req.acquisition)[0, 0].numpy()
    body = skip.astype("<f4").tobytes() + np.clip(bicubic, 0, 1).astype("<f4").tobytes()
    headers = {"X-Shape": f"{out_shape[0]},{out_shape[1]}", "X-Zoom": engine.scale_text(req.scale)}
    return Response(body, media_type="application/octet-stream", headers=headers)
