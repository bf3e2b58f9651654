"""The training loop: stages, schedules, validation, checkpoints, logging, distribution.

Runs on a laptop CPU or many GPUs alike: launched with ``torchrun`` it uses
DistributedDataParallel (NCCL on GPUs, gloo on CPUs), each rank drawing disjoint batches;
rank 0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metasrgan.checkpoint import save_model
from metasrgan.data.patches import Augment, PatchSampler
from metasrgan.registry import make
from metasrgan.scale import parse_scales
from metasrgan.train.config import TrainConfig, config_to_dict, val_chains
from metasrgan.train.state import (
    read_state,
    restore_models,
    restore_optimizers,
    save_state,
)
from metasrgan.train.step import acquisition_kwargs, gan_step


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> Dist:
    """Join the ``torchrun`` process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    backend = "nccl" if device_name.startswith("cuda") else "gloo"
    if backend == "nccl":
        # before any collective (the run folder's broadcast): one GPU per local rank
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def new_run_dir(root: Path, name: str) -> Path:
    """A fresh folder ``root/name`` (``name-2``, ``name-3``... if taken): never overwritten."""
    root.mkdir(parents=True, exist_ok=True)
    candidate, n = root / name, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = root / f"{name}-{n}"


def agree_run_dir(dist: Dist, root: Path, name: str) -> Path:
    """``new_run_dir`` on rank 0, the same folder on every rank (never an existing one)."""
    if dist.world_size <= 1:
        return new_run_dir(root, name)
    import torch.distributed as tdist

    box = [str(new_run_dir(root, name)) if dist.main else None]
    tdist.broadcast_object_list(box, src=0)
    return Path(box[0])


def load_stage_images(sources: list[dict], split: str) -> list[np.ndarray]:
    from metasrgan.data.datasets import load_slices

    images: list[np.ndarray] = []
    for spec in sources:
        images.extend(load_slices(spec, split))
    return images


def _ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two ``[1, 1, H, W]`` images in [0, 1] (NaN where too small for the window)."""
    from metasrgan.metrics import SSIM_RADIUS, ssim

    if min(a.shape[-2:]) <= 2 * SSIM_RADIUS:
        return math.nan
    return ssim(a[0, 0].double().cpu().numpy(), b[0, 0].double().cpu().numpy(), 1.0)


def psnr_unit(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1).double(), b.double()).item()
    return 99.0 if mse == 0 else 10 * math.log10(1.0 / mse)


class Trainer:
    """Runs a config's stages in ``run_dir`` (created by the caller, see :func:`agree_run_dir`).

    Each stage gets fresh Adam optimizers and StepLR schedules (the paper's transfer from
    natural images to MRI starts from the weights only).  ``resume=True`` restores
    ``run_dir/state`` (weights, optimizers, schedulers, step, RNG) and continues exactly;
    the batches need no saved state (see :mod:`metasrgan.data.patches`).  Under
    ``torchrun`` every rank must see ``run_dir`` (a shared file system across nodes); rank 0
    alone validates, logs and writes.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        init_from: str | None = None,
        resume: bool = False,
        progress: bool = True,
    ):
        from metasrgan.inference import pick_device

        self.cfg = cfg
        self.run_dir = run_dir
        self.progress = progress
        self.device = pick_device(cfg.device)
        self.dist = init_distributed(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.generator = make(cfg.model).to(self.device)
        needs_d = any(cfg.stage_loss(s).adversarial > 0 for s in cfg.stages)
        self.discriminator = (
            make(cfg.discriminator).to(self.device) if needs_d and cfg.discriminator else None
        )
        _check_fixed_scale(self.generator, cfg)
        if init_from and not resume:
            load_init_weights(self.generator, init_from)
        self.vgg = self._build_vgg()
        self.gpu_fast = self.device.type == "cuda" and cfg.amp
        if self.gpu_fast:
            for model in (self.generator, self.discriminator, self.vgg):
                if model is not None:
                    model.to(memory_format=torch.channels_last)
        self.step = 0
        self.resume_meta: dict | None = None
        self.resume_tensors: dict | None = None
        if resume:
            self.resume_meta, self.resume_tensors = read_state(run_dir / "state")
            restore_models(self.resume_tensors, self.generator, self.discriminator)
            self.step = int(self.resume_meta["step"])
        self.g = self._wrap(self.generator)
        self.d = self._wrap(self.discriminator) if self.discriminator is not None else None
        self.writer = self._writer()
        if resume and self.dist.main:
            _truncate_log(run_dir / "log.jsonl", self.step)
        best = (self.resume_meta or {}).get("best_gain")
        self.best_gain = -math.inf if best is None else float(best)
        self.val_images = None
        self.val_chains: list | None = None
        self.val_baselines: dict = {}

    # ------------------------------------------------------------------ set-up helpers
    def _build_vgg(self) -> nn.Module | None:
        perceptual = [self.cfg.stage_loss(s) for s in self.cfg.stages]
        wanted = [loss for loss in perceptual if loss.perceptual > 0]
        if not wanted:
            return None
        vgg = make({"name": "vgg19-features"})
        vgg.load_pretrained(wanted[0].vgg19, download=wanted[0].vgg19_download)
        return vgg.to(self.device).eval()

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.dist.world_size <= 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def _writer(self):
        if not self.dist.main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is an optional extra
            print("tensorboard is not installed: logging to log.jsonl only")
            return None
        # on resume, drop events logged after the saved step by the interrupted process
        purge = self.step if self.resume_meta is not None else None
        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge)

    def _autocast(self):
        if self.gpu_fast:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _log(self, tag_values: dict[str, float], step: int) -> None:
        if not self.dist.main:
            return
        if self.writer is not None:
            for k, v in tag_values.items():
                self.writer.add_scalar(k, v, step)
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **tag_values}) + "\n")

    # ------------------------------------------------------------------ main loop
    def fit(self) -> Path:
        cfg = self.cfg
        if self.dist.main:
            import yaml

            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg)))
        stage_start = 0
        for index, stage in enumerate(cfg.stages):
            stage_end = stage_start + stage.steps
            if self.step < stage_end:
                self._run_stage(index, stage_start)
            stage_start = stage_end
        if self.dist.main and self.writer is not None:
            self.writer.close()
        return self.run_dir / "checkpoints" / "last.safetensors"

    def _run_stage(self, index: int, stage_start: int) -> None:
        cfg = self.cfg
        stage = cfg.stages[index]
        loss_cfg = cfg.stage_loss(stage)
        aug = stage.augment or cfg.augment
        images = load_stage_images(stage.data, "train")
        sampler = PatchSampler(
            images,
            batch_size=cfg.batch_size,
            patch_size=cfg.patch_size,
            scales=parse_scales(cfg.scales, as_float=True),
            patches_per_image=cfg.patches_per_image,
            degradation=stage.degradation or cfg.degradation,
            augment=Augment(aug.flip, aug.rot90, aug.gamma, aug.gain),
            seed=cfg.seed + 1000 * index,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        o = cfg.optim
        opt_g = torch.optim.Adam(self.g.parameters(), lr=o.lr, betas=o.betas)
        sched_g = torch.optim.lr_scheduler.StepLR(opt_g, o.decay_every, o.decay)
        opt_d = sched_d = None
        if self.d is not None and loss_cfg.adversarial > 0:
            opt_d = torch.optim.Adam(self.d.parameters(), lr=o.d_lr, betas=o.betas)
            sched_d = torch.optim.lr_scheduler.StepLR(opt_d, o.decay_every, o.decay)
        if self.resume_meta is not None and int(self.resume_meta["stage"]) == index:
            restore_optimizers(
                self.resume_meta, self.resume_tensors, opt_g, opt_d, sched_g, sched_d
            )
            saved_lr = opt_g.param_groups[0].get("initial_lr", o.lr)
            if self.dist.main and saved_lr != o.lr:
                print(
                    f"note: optim.lr is {o.lr:g} in the config but the resumed stage started at "
                    f"{saved_lr:g}; the restored optimizer and schedule continue unchanged"
                )
        self.resume_meta = self.resume_tensors = None
        if self.dist.main:
            print(
                f"stage {index} '{stage.name}': {len(images)} training images, "
                f"steps {self.step - stage_start}..{stage.steps}, loss {loss_cfg}"
            )
        warmup = dataclasses_replace_l1(loss_cfg)
        bar = self._bar(stage, stage_start)
        self.g.train()
        if self.d is not None:
            self.d.train()
        train_time = 0.0  # seconds spent in training steps since the last log line
        while self.step < stage_start + stage.steps:
            started = time.perf_counter()
            local = self.step - stage_start
            batch = sampler.batch(local)
            batch = {
                "hr": self._to_device(batch["hr"]),
                "lr": self._to_device(batch["lr"]),
                "scale": batch["scale"],
                "acquisition": batch.get("acquisition"),
            }
            use = warmup if (index == 0 and self.step < cfg.warmup_l1_steps) else loss_cfg
            logs = gan_step(
                batch, self.g, self.d, opt_g, opt_d if use.adversarial > 0 else None,
                use, self.vgg, self._autocast(),
            )  # fmt: skip
            sched_g.step()
            if sched_d is not None and use.adversarial > 0:
                sched_d.step()
            self.step += 1
            train_time += time.perf_counter() - started
            if bar is not None:
                bar.update(1)
                bar.set_postfix(l1=f"{logs['l_g_pix']:.4f}", s=_scale_text(batch["scale"]))
            if self.step % cfg.log_every == 0:
                logs["steps_per_s"] = cfg.log_every / max(train_time, 1e-9)
                logs["lr_g"] = opt_g.param_groups[0]["lr"]
                train_time = 0.0
                self._log({f"train/{k}": v for k, v in logs.items()}, self.step)
            end_of_stage = self.step == stage_start + stage.steps
            if cfg.validate_every and (self.step % cfg.validate_every == 0 or end_of_stage):
                self.validate()
            elif cfg.sample_every and self.step % cfg.sample_every == 0:
                self.write_samples()
            if self.step % cfg.checkpoint_every == 0 or end_of_stage:
                self.checkpoint(index, opt_g, opt_d, sched_g, sched_d)
        if bar is not None:
            bar.close()
        if self.dist.main:
            save_model(
                self.generator, self.run_dir / "checkpoints" / f"stage-{stage.name}.safetensors",
                extra=self._model_extra(),
            )  # fmt: skip

    def _bar(self, stage, stage_start):
        if not (self.progress and self.dist.main):
            return None
        from tqdm import tqdm

        return tqdm(
            total=stage.steps, initial=self.step - stage_start, desc=stage.name,
            unit="step", dynamic_ncols=True, mininterval=2.0,
        )  # fmt: skip

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if self.gpu_fast else t

    def _model_extra(self) -> dict:
        return {
            "config": config_to_dict(self.cfg),
            "step": self.step,
            "trained": True,
        }

    # ------------------------------------------------------------------ validation
    def _load_val(self) -> list[torch.Tensor]:
        if self.val_images is None:
            images = load_stage_images(self.cfg.val_data, "val") if self.cfg.val_data else []
            self.val_images = [
                torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32))
                for im in images[: self.cfg.val_images]
            ]
        return self.val_images

    def _val_setup(self) -> list[tuple[str, object, list[float]]]:
        if self.val_chains is None:
            self.val_chains = val_chains(self.cfg)
        return self.val_chains

    def _val_batch(self, k: int, im: torch.Tensor, chain, scale: float):
        """The evaluation protocol's exact-size HR and degraded LR for validation image ``k``."""
        from fractions import Fraction

        from metasrgan.evaluation import prepare
        from metasrgan.scale import as_fraction

        frac: Fraction = as_fraction(scale)
        batch = prepare(im[None, None], frac, chain, seed=k)
        batch.hr, batch.lr = batch.hr.to(self.device), batch.lr.to(self.device)
        return batch

    def _run_val(self, batch) -> torch.Tensor:
        extra = acquisition_kwargs(self.generator, {"acquisition": batch.acquisition})
        size = tuple(batch.hr.shape[-2:])
        return self.generator(batch.lr, batch.scale, size, **extra).float().clamp(0, 1)

    def _baseline(self, name: str, chain, scale: float) -> tuple[float, float, str]:
        """Mean PSNR and SSIM of the best classical interpolation (cached: LR is fixed)."""
        key = (name, scale)
        if key not in self.val_baselines:
            from metasrgan.interpolation import CLASSICAL, interpolate

            best = (-math.inf, -math.inf, "")
            for method in CLASSICAL:
                p, q = [], []
                for k, im in enumerate(self._load_val()):
                    b = self._val_batch(k, im, chain, scale)
                    out = interpolate(b.lr, tuple(b.hr.shape[-2:]), method).clamp(0, 1)
                    p.append(psnr_unit(out, b.hr))
                    q.append(_ssim(out, b.hr))
                if np.mean(p) > best[0]:
                    best = (float(np.mean(p)), float(np.nanmean(q)), method)
            self.val_baselines[key] = best
        return self.val_baselines[key]

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """PSNR/SSIM of the generator and of the best classical interpolation for each
        validation degradation and scale (rank 0).

        ``best.safetensors`` is the model with the highest mean PSNR gain over the best
        classical baseline, averaged over every validation degradation and scale.
        """
        if not self.dist.main:
            return {}
        images = self._load_val()
        if not images:
            return {}
        self.generator.eval()
        results: dict[str, float] = {}
        gains = []
        for name, chain, scales in self._val_setup():
            key = f"val/{name}/" if name else "val/"
            for s in scales:
                ours, ours_ssim = [], []
                for k, im in enumerate(images):
                    batch = self._val_batch(k, im, chain, s)
                    sr = self._run_val(batch)
                    ours.append(psnr_unit(sr, batch.hr))
                    ours_ssim.append(_ssim(sr, batch.hr))
                base_psnr, base_ssim, _ = self._baseline(name, chain, s)
                results[f"{key}psnr_x{s:g}"] = float(np.mean(ours))
                results[f"{key}psnr_classical_x{s:g}"] = base_psnr
                results[f"{key}ssim_x{s:g}"] = float(np.nanmean(ours_ssim))
                results[f"{key}ssim_classical_x{s:g}"] = base_ssim
                gains.append(float(np.mean(ours)) - base_psnr)
            mine = gains[-len(scales) :]
            results[f"{key}psnr_gain_mean"] = float(np.mean(mine))
        results["val/psnr_gain_mean"] = float(np.mean(gains))
        self._log(results, self.step)
        self.write_samples()
        self.generator.train()
        gain = results["val/psnr_gain_mean"]
        if gain > self.best_gain:
            self.best_gain = gain
            save_model(
                self.generator, self.run_dir / "checkpoints" / "best.safetensors",
                extra={**self._model_extra(), "val": results},
            )  # fmt: skip
        return results

    @torch.no_grad()
    def write_samples(self) -> None:
        """A bicubic | generator | HR panel of the first validation image to TensorBoard."""
        if self.writer is None:
            return
        from metasrgan.interpolation import bicubic

        images = self._load_val()
        setup = self._val_setup()
        if not images or not setup:
            return
        was_training = self.generator.training
        self.generator.eval()
        name, chain, scales = setup[0]
        s = scales[len(scales) // 2]
        batch = self._val_batch(0, images[0], chain, s)
        sr = self._run_val(batch)
        base = bicubic(batch.lr, tuple(batch.hr.shape[-2:])).clamp(0, 1)
        panel = torch.cat([base, sr, batch.hr], dim=-1)
        tag = f"val/{name or 'val'}/bicubic_sr_hr_x{s:g}"
        self.writer.add_image(tag, panel[0].cpu(), self.step)
        self.generator.train(was_training)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, stage: int, opt_g, opt_d, sched_g, sched_d) -> None:
        if not self.dist.main:
            return
        save_model(
            self.generator, self.run_dir / "checkpoints" / "last.safetensors",
            extra=self._model_extra(),
        )  # fmt: skip
        save_state(
            self.run_dir / "state", step=self.step, stage=stage,
            generator=self.generator, discriminator=self.discriminator,
            opt_g=opt_g, opt_d=opt_d, sched_g=sched_g, sched_d=sched_d,
            extra={"best_gain": self.best_gain if math.isfinite(self.best_gain) else None},
        )  # fmt: skip
        if self.writer is not None:
            self.writer.flush()


def _scale_text(scale) -> str:
    return "x".join(f"{v:g}" for v in scale) if isinstance(scale, tuple) else f"{scale:.1f}"


def load_init_weights(generator: nn.Module, path: str) -> None:
    """``--init-from``: a model file's weights.  A generator conditioned on more inputs than
    the file's (e.g. an acquisition-conditioned model from an unconditioned one) gets zero
    weights for the new inputs of its weight predictor, so it starts as exactly that model."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from metasrgan.checkpoint import load_weights

    key = "upscale.weight_prediction.body.0.weight"
    own = generator.state_dict().get(key)
    old = None
    if own is not None:
        try:
            with safe_open(str(path), "pt") as f:
                old = f.get_tensor(key) if key in f.keys() else None  # noqa: SIM118
        except Exception:  # not a safetensors file: load_weights says what is wrong
            old = None
    if old is None or old.shape == own.shape or old.shape[0] != own.shape[0]:
        load_weights(generator, path)
        return
    state = load_file(str(path))
    widened = own.new_zeros(own.shape)
    widened[:, : old.shape[1]] = old
    state[key] = widened
    generator.load_state_dict(state, strict=True)


def _truncate_log(path: Path, step: int) -> None:
    """Drop the lines an interrupted process logged after its last saved state."""
    if not path.is_file():
        return
    from metasrgan.checkpoint import atomic_write

    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut short by the interruption
            continue
    text = "".join(x + "\n" for x in kept)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _check_fixed_scale(generator: nn.Module, cfg: TrainConfig) -> None:
    """SRGAN/EDSR upscale by one factor: say so before training, not at the first batch."""
    fixed = getattr(generator, "fixed_scale", None)
    if fixed is None:
        return
    wrong = sorted(
        {
            s
            for s in (*parse_scales(cfg.scales, as_float=True), *cfg.val_scales)
            if abs(s - fixed) > 1e-9
        }
    )
    if wrong:
        raise ValueError(
            f"model {cfg.model['name']!r} only upscales by x{fixed}, but scales/val_scales "
            f'ask for {wrong}; set scales: "{float(fixed)}" and val_scales: [{float(fixed)}]'
        )


def dataclasses_replace_l1(loss):
    import dataclasses

    return dataclasses.replace(loss, adversarial=0.0, perceptual=0.0)


__all__ = ["Trainer", "agree_run_dir", "new_run_dir"]
