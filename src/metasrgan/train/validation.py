"""Validation during training: the evaluation protocol's LR/HR pairs of the validation
images for each configured degradation and scale, scored against the best classical
interpolation of the same LR (computed once: the LR never changes)."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metasrgan.train.config import TrainConfig, val_chains
from metasrgan.train.step import acquisition_kwargs


def ssim_unit(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two ``[1, 1, H, W]`` images in [0, 1] (NaN where too small for the window)."""
    from metasrgan.metrics import SSIM_RADIUS, ssim

    if min(a.shape[-2:]) <= 2 * SSIM_RADIUS:
        return math.nan
    return ssim(a[0, 0].double().cpu().numpy(), b[0, 0].double().cpu().numpy(), 1.0)


def psnr_unit(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1).double(), b.double()).item()
    return 99.0 if mse == 0 else 10 * math.log10(1.0 / mse)


class Validator:
    """Scores a generator on ``cfg``'s validation images (read on first use by ``load``)."""

    def __init__(
        self, cfg: TrainConfig, device: torch.device, load: Callable[[], list[np.ndarray]]
    ):
        self.cfg, self.device, self._load = cfg, device, load
        self._images: list[torch.Tensor] | None = None
        self._chains: list | None = None
        self._baselines: dict = {}

    def images(self) -> list[torch.Tensor]:
        if self._images is None:
            images = self._load() if self.cfg.val_data else []
            self._images = [
                torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32))
                for im in images[: self.cfg.val_images]
            ]
        return self._images

    def chains(self) -> list[tuple[str, object, list[float]]]:
        """``(name, chain, scales)`` per validation degradation."""
        if self._chains is None:
            self._chains = val_chains(self.cfg)
        return self._chains

    def pair(self, k: int, im: torch.Tensor, chain, scale: float):
        """The evaluation protocol's exact-size HR and degraded LR for validation image ``k``."""
        from metasrgan.evaluation import prepare
        from metasrgan.scale import as_fraction

        frac: Fraction = as_fraction(scale)
        batch = prepare(im[None, None], frac, chain, seed=k)
        batch.hr, batch.lr = batch.hr.to(self.device), batch.lr.to(self.device)
        return batch

    @staticmethod
    def upscale(generator: nn.Module, batch) -> torch.Tensor:
        extra = acquisition_kwargs(generator, {"acquisition": batch.acquisition})
        size = tuple(batch.hr.shape[-2:])
        return generator(batch.lr, batch.scale, size, **extra).float().clamp(0, 1)

    def baseline(self, name: str, chain, scale: float) -> tuple[float, float, str]:
        """Mean PSNR and SSIM of the best classical interpolation (cached: LR is fixed)."""
        key = (name, scale)
        if key not in self._baselines:
            from metasrgan.interpolation import CLASSICAL, interpolate

            best = (-math.inf, -math.inf, "")
            pairs = [self.pair(k, im, chain, scale) for k, im in enumerate(self.images())]
            for method in CLASSICAL:
                p, q = [], []
                for b in pairs:
                    out = interpolate(b.lr, tuple(b.hr.shape[-2:]), method).clamp(0, 1)
                    p.append(psnr_unit(out, b.hr))
                    q.append(ssim_unit(out, b.hr))
                if np.mean(p) > best[0]:
                    best = (float(np.mean(p)), float(np.nanmean(q)), method)
            self._baselines[key] = best
        return self._baselines[key]

    @torch.no_grad()
    def scores(self, generator: nn.Module) -> dict[str, float]:
        """PSNR/SSIM of ``generator`` (in eval mode) and of the best classical interpolation
        per degradation and scale, and ``val/psnr_gain_mean``: the mean PSNR gain over that
        baseline across every degradation and scale.  Empty without validation images."""
        images = self.images()
        if not images:
            return {}
        results: dict[str, float] = {}
        gains = []
        for name, chain, scales in self.chains():
            key = f"val/{name}/" if name else "val/"
            for s in scales:
                ours, ours_ssim = [], []
                for k, im in enumerate(images):
                    batch = self.pair(k, im, chain, s)
                    sr = self.upscale(generator, batch)
                    ours.append(psnr_unit(sr, batch.hr))
                    ours_ssim.append(ssim_unit(sr, batch.hr))
                base_psnr, base_ssim, _ = self.baseline(name, chain, s)
                results[f"{key}psnr_x{s:g}"] = float(np.mean(ours))
                results[f"{key}psnr_classical_x{s:g}"] = base_psnr
                results[f"{key}ssim_x{s:g}"] = float(np.nanmean(ours_ssim))
                results[f"{key}ssim_classical_x{s:g}"] = base_ssim
                gains.append(float(np.mean(ours)) - base_psnr)
            mine = gains[-len(scales) :]
            results[f"{key}psnr_gain_mean"] = float(np.mean(mine))
        results["val/psnr_gain_mean"] = float(np.mean(gains))
        return results

    @torch.no_grad()
    def panel(self, generator: nn.Module) -> tuple[str, torch.Tensor] | None:
        """``(tag, [1, H, 3W])``: bicubic | generator | HR of the first validation image at the
        middle scale of the first degradation (``generator`` in eval mode)."""
        from metasrgan.interpolation import bicubic

        images, setup = self.images(), self.chains()
        if not images or not setup:
            return None
        name, chain, scales = setup[0]
        s = scales[len(scales) // 2]
        batch = self.pair(0, images[0], chain, s)
        sr = self.upscale(generator, batch)
        base = bicubic(batch.lr, tuple(batch.hr.shape[-2:])).clamp(0, 1)
        panel = torch.cat([base, sr, batch.hr], dim=-1)
        return f"val/{name or 'val'}/bicubic_sr_hr_x{s:g}", panel[0].cpu()
