"""One readable GAN update: the generator, then the discriminator (BasicSR's SRGAN step).

The generator loss is ``l1 * L1 + adversarial * GAN + perceptual * VGG``; the adversarial
term is the standard GAN objective in its non-saturating form (the generator maximises
``log D(G(z))``), the discriminator minimises ``-log D(x) - log(1 - D(G(z)))``.  The
discriminator's parameters are frozen while the generator trains; every term is returned
by name (``l_g_pix``, ``l_g_gan``, ``l_g_percep``, ``l_g_noise``, ``l_d_real``,
``l_d_fake``).  Noise-aware generators also learn to estimate the noise the batch carries.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from metasrgan.train.config import LossConfig

EPS = 1e-7


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (used for passes that need no gradient sync)."""
    return getattr(model, "module", model)


def _bce(prob: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy in float32, outside autocast (CUDA autocast refuses this op)."""
    with torch.autocast(prob.device.type, enabled=False):
        prob = prob.float().clamp(EPS, 1 - EPS)
        target = torch.ones_like(prob) if real else torch.zeros_like(prob)
        return F.binary_cross_entropy(prob, target)


def acquisition_kwargs(generator: nn.Module, batch: dict) -> dict:
    """``{"acquisition": ...}`` for generators conditioned on it, else nothing."""
    if getattr(_unwrap(generator), "acquisitions", ()) and batch.get("acquisition"):
        return {"acquisition": batch["acquisition"]}
    return {}


def gan_step(
    batch: dict,
    generator: nn.Module,
    discriminator: nn.Module | None,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer | None,
    loss: LossConfig,
    vgg: nn.Module | None = None,
    autocast: AbstractContextManager | None = None,
) -> dict[str, float]:
    """Update the generator (and the discriminator if the adversarial weight is > 0)."""
    autocast = autocast or nullcontext()
    lr, hr, scale = batch["lr"], batch["hr"], batch["scale"]
    use_gan = loss.adversarial > 0 and discriminator is not None
    logs: dict[str, float] = {}

    # ---- generator
    with autocast:
        sr = generator(lr, scale, tuple(hr.shape[-2:]), **acquisition_kwargs(generator, batch))
        l_pix = F.l1_loss(sr.float(), hr)
        total = loss.l1 * l_pix
        logs["l_g_pix"] = l_pix.item()
        estimate = getattr(_unwrap(generator), "estimated_noise", None)
        if loss.noise_level > 0 and estimate is not None and "noise" in batch:
            from metasrgan.models.meta_srgan import NOISE_UNIT

            target = batch["noise"].to(estimate.device, torch.float32)
            l_noise = F.l1_loss(estimate.float() / NOISE_UNIT, target / NOISE_UNIT)
            total = total + loss.noise_level * l_noise
            logs["l_g_noise"] = l_noise.item()
        if loss.perceptual > 0:
            if vgg is None:
                raise ValueError("the perceptual loss is on but no VGG19 was given")
            with torch.no_grad():  # the target's features need no graph
                target = vgg(hr).float()
            l_percep = F.mse_loss(vgg(sr).float(), target)
            total = total + loss.perceptual * l_percep
            logs["l_g_percep"] = l_percep.item()
        if use_gan:
            d = _unwrap(discriminator)
            d.requires_grad_(False)
            l_gan = _bce(d(sr), real=True)
            total = total + loss.adversarial * l_gan
            logs["l_g_gan"] = l_gan.item()
    if not torch.isfinite(total):
        raise FloatingPointError(f"generator loss is {total.item()} (diverged); lower the lr")
    opt_g.zero_grad(set_to_none=True)
    total.backward()
    opt_g.step()
    logs["l_g_total"] = total.item()

    # ---- discriminator
    if use_gan:
        assert opt_d is not None
        _unwrap(discriminator).requires_grad_(True)
        opt_d.zero_grad(set_to_none=True)
        # real and fake pass separately (batch norm sees each alone, as in SRGAN); under DDP
        # the first backward accumulates locally and the second synchronises the sum.
        no_sync = getattr(discriminator, "no_sync", nullcontext)
        with no_sync():
            with autocast:
                l_real = _bce(discriminator(hr), real=True)
            l_real.backward()
        with autocast:
            l_fake = _bce(discriminator(sr.detach()), real=False)
        l_fake.backward()
        opt_d.step()
        logs["l_d_real"] = l_real.item()
        logs["l_d_fake"] = l_fake.item()
    return logs
