"""What the page needs to run the Meta-Upscale itself (WebGL2), the server's path as reference.

Meta-SRGAN's output is ``clamp(skip(x) + MetaUpscale(features) * std)`` (``clamp(decode(
MetaUpscale(features)))`` without a skip).  The features do not depend on the scale and the
Meta-Upscale at a scale ``p/q`` per axis needs only ``p_h * p_w`` predicted 3x3x64 kernels
(:mod:`metasrgan.scale`'s index rule: output pixel ``i`` reads input ``floor(i*q/p)`` with
the kernel of phase ``i mod p``).  So the page gets, once per slice, the features (float16,
in the layout of a WebGL2 ``RGBA16F`` texture array: 16 layers of 4 channels) and per scale
the kernels (float32, a few KB to a few MB) and the skip image (computed here, once per
slice and scale, so every skip the model knows is exact); it then runs the 576
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
SKIPS = ("none", "bicubic")
"""Skips the page can add itself (the skip image comes from here either way)."""


def check_model(model: nn.Module) -> None:
    """Refuse models whose Meta-Upscale the page cannot reproduce (then it uses the server)."""
    if not engine.supports_feature_cache(model) or not hasattr(model, "upscale"):
        raise ScanError("this model cannot be run in the browser; the server computes its zooms")
    if engine.acquisitions_of(model) or getattr(model, "skip", "none") not in SKIPS:
        raise ScanError(
            "this model is conditioned or has a skip the page does not add; the server "
            "computes its zooms"
        )
    if getattr(model, "channels", 1) != 1 or model.upscale.kernel_size != 3:
        raise ScanError("only one-channel models with 3x3 kernels run in the browser")


@torch.no_grad()
def phase_kernels(model: nn.Module, scale: Scale2d) -> np.ndarray:
    """``[p_h * p_w, 9, C]`` float32: the kernel of every phase pair, taps (dy, dx) row by row."""
    upscale = model.upscale
    ref = next(iter(model.parameters()))
    off_h = torch.tensor(scale.h.phase_offsets(), dtype=ref.dtype, device=ref.device)
    off_w = torch.tensor(scale.w.phase_offsets(), dtype=ref.dtype, device=ref.device)
    ph, pw = off_h.numel(), off_w.numel()
    pos = torch.stack(
        [
            off_h[:, None].expand(ph, pw),
            off_w[None, :].expand(ph, pw),
            torch.full((ph, pw), scale.scale_feature(), dtype=ref.dtype, device=ref.device),
        ],
        dim=-1,
    ).reshape(ph * pw, 3)
    weights = upscale.weight_prediction(pos)  # [P, O * C * k * k], O = 1
    channels = upscale.in_features
    kernels = weights.view(ph * pw, channels, 9).permute(0, 2, 1)  # [P, tap, C]
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
):
    check_model(viewer.model)
    try:
        scale = engine.snap_scales(scale_h, scale_w)
    except ValueError as err:
        raise ScanError(str(err)) from None
    kernels = phase_kernels(viewer.model, scale)
    norm = viewer.model.normalization
    meta = {
        "p_h": scale.h.p,
        "q_h": scale.h.q,
        "p_w": scale.w.p,
        "q_w": scale.w.q,
        "taps": 9,
        "channels": int(kernels.shape[2]),
        "skip": getattr(viewer.model, "skip", "none"),
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
    skip = bicubic if viewer.model.skip == "bicubic" else np.zeros_like(bicubic)
    body = skip.astype("<f4").tobytes() + np.clip(bicubic, 0, 1).astype("<f4").tobytes()
    headers = {"X-Shape": f"{out_shape[0]},{out_shape[1]}", "X-Zoom": engine.scale_text(req.scale)}
    return Response(body, media_type="application/octet-stream", headers=headers)
