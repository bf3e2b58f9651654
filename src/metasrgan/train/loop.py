"""The training loop: stages, schedules, checkpoints, distribution (validation:
:mod:`.validation`; run folder, process group and logs: :mod:`.runs`; a stage's data and
parameter groups: :mod:`.stages`).

Runs on a laptop CPU or many GPUs alike: launched with ``torchrun`` it uses
DistributedDataParallel (NCCL on GPUs, gloo on CPUs), each rank drawing disjoint batches
from DataLoader workers over one shared slice file; rank 0 alone logs and writes checkpoints.
A stage is :meth:`Trainer._run_stage`: set-up, restore, slices, then updates, each followed
by the report and the validation/checkpoint hooks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from metasrgan.checkpoint import save_model
from metasrgan.data.patches import PatchSampler, batch_loader
from metasrgan.data.store import SliceStore
from metasrgan.registry import make
from metasrgan.train.average import WeightAverage
from metasrgan.train.config import (
    TrainConfig,
    config_to_dict,
)
from metasrgan.train.runs import (
    agree,
    append_log,
    check_fixed_scale,
    init_distributed,
    load_init_weights,
    tensorboard_writer,
    truncate_log,
    wait_for_file,
)
from metasrgan.train.stages import StageRun, load_stage_images, lr_groups, stage_sampler
from metasrgan.train.state import (
    read_state,
    restore_models,
    restore_optimizers,
    save_state,
)
from metasrgan.train.step import gan_step
from metasrgan.train.validation import Validator

log = logging.getLogger("metasrgan.train")  # -v/-q (metasrgan.logs)


class Trainer:
    """Runs a config's stages in ``run_dir`` (created by the caller, see
    :func:`~metasrgan.train.runs.agree_run_dir`).

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
        check_fixed_scale(self.generator, cfg)
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
        self.average = self._weight_average()
        self.g = self._wrap(self.generator)
        self.d = self._wrap(self.discriminator) if self.discriminator is not None else None
        # on resume, TensorBoard drops what the interrupted process logged after the state
        purge = self.step if self.resume_meta is not None else None
        self.writer = tensorboard_writer(run_dir, purge) if self.dist.main else None
        if resume and self.dist.main:
            truncate_log(run_dir / "log.jsonl", self.step)
        best = (self.resume_meta or {}).get("best_gain")
        self.best_gain = -math.inf if best is None else float(best)
        self.validator = Validator(
            cfg, self.device, lambda: load_stage_images(cfg.val_data, "val")
        )  # fmt: skip

    # ------------------------------------------------------------------ set-up helpers
    def _build_vgg(self) -> nn.Module | None:
        perceptual = [self.cfg.stage_loss(s) for s in self.cfg.stages]
        wanted = [loss for loss in perceptual if loss.perceptual > 0]
        if not wanted:
            return None
        vgg = make({"name": "vgg19-features"})
        vgg.load_pretrained(wanted[0].vgg19, download=wanted[0].vgg19_download)
        return vgg.to(self.device).eval()

    def _weight_average(self) -> WeightAverage | None:
        """The generator's weight average (``optim.ema`` > 0; rank 0, which alone validates
        and saves), restored on resume; a state saved without one starts it afresh."""
        decay = self.cfg.optim.ema
        if not decay or not self.dist.main:
            return None
        average = WeightAverage(self.generator, decay)
        tensors = self.resume_tensors
        where = str(getattr(tensors, "path", "the training state"))
        if tensors is not None and not average.restore(tensors, where):
            log.info(
                "note: the resumed state has no weight average; it starts now (step %d)", self.step
            )
        return average

    @property
    def served(self) -> nn.Module:
        """The network that is validated and saved: the weight average if there is one."""
        return self.average.model if self.average is not None else self.generator

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.dist.world_size <= 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

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
        append_log(self.run_dir / "log.jsonl", step, tag_values)

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
        """One stage: its set-up, its updates from the current step to its end, its model."""
        run = self._stage_setup(index, stage_start)
        self._restore_stage(run)
        store = self._stage_slices(run)
        try:
            sampler = stage_sampler(self.cfg, run.index, store, self.dist)
            if self.dist.main:
                log.info(
                    "stage %d '%s': %d training images, steps %d..%d, loss %s",
                    index, run.stage.name, len(store), self.step - stage_start,
                    run.stage.steps, run.loss,
                )  # fmt: skip
            self._updates(run, sampler)
        finally:
            if self.dist.main:
                store.remove()
                with contextlib.suppress(OSError):  # the folder, once no file is left in it
                    store.path.parent.rmdir()
        if self.dist.main:
            path = self.run_dir / "checkpoints" / f"stage-{run.stage.name}.safetensors"
            save_model(self.served, path, extra=self._model_extra())

    def _stage_setup(self, index: int, stage_start: int) -> StageRun:
        """Fresh Adam optimizers and StepLR schedules for stage ``index``."""
        cfg = self.cfg
        stage = cfg.stages[index]
        loss = cfg.stage_loss(stage)
        o = cfg.optim
        opt_g = torch.optim.Adam(lr_groups(self.generator, o.lr, o.lr_scales), betas=o.betas)
        sched_g = torch.optim.lr_scheduler.StepLR(opt_g, o.decay_every, o.decay)
        opt_d = sched_d = None
        if self.d is not None and loss.adversarial > 0:
            opt_d = torch.optim.Adam(self.d.parameters(), lr=o.d_lr, betas=o.betas)
            sched_d = torch.optim.lr_scheduler.StepLR(opt_d, o.decay_every, o.decay)
        return StageRun(index, stage, stage_start, loss, opt_g, sched_g, opt_d, sched_d)

    def _restore_stage(self, run: StageRun) -> None:
        """On resume into this stage: its optimizers and schedules as they were saved."""
        meta, tensors = self.resume_meta, self.resume_tensors
        self.resume_meta = self.resume_tensors = None
        if meta is None or int(meta["stage"]) != run.index:
            return
        restore_optimizers(meta, tensors, run.opt_g, run.opt_d, run.sched_g, run.sched_d)
        saved_lr = run.opt_g.param_groups[0].get("initial_lr", self.cfg.optim.lr)
        if self.dist.main and saved_lr != self.cfg.optim.lr:
            log.info(
                "note: optim.lr is %g in the config but the resumed stage started at %g; the "
                "restored optimizer and schedule continue unchanged", self.cfg.optim.lr, saved_lr,
            )  # fmt: skip

    def _stage_slices(self, run: StageRun) -> SliceStore:
        """Rank 0 reads the stage's training slices once into ``run_dir/slices``; every rank
        (and every DataLoader worker) maps that one file (see :mod:`metasrgan.data.store`).
        The file's name is fresh per process group, so no rank reads one left by a killed run."""
        folder = self.run_dir / "slices"
        name = agree(self.dist, f"stage-{run.index}-{os.getpid()}-{time.time_ns()}")
        path, failed = folder / f"{name}.npy", folder / f"{name}.failed"
        if not self.dist.main:
            wait_for_file(path, failed)
            return SliceStore(path)
        for old in folder.glob("stage-*"):  # left by an interrupted process
            old.unlink()
        try:
            return SliceStore.write(path, load_stage_images(run.stage.data, "train"))
        except BaseException as err:
            if self.dist.world_size > 1:
                failed.write_text(f"{type(err).__name__}: {err}")
            raise

    def _updates(self, run: StageRun, sampler: PatchSampler) -> None:
        """The stage's remaining updates, on batches made by the DataLoader's workers."""
        bar = self._bar(run.stage, run.start)
        self.g.train()
        if self.d is not None:
            self.d.train()
        loader = batch_loader(
            sampler, self.step - run.start, run.stage.steps, self.cfg.workers,
            pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        batches = iter(loader)
        self._train_time = 0.0  # seconds in data + updates since the last log line
        try:
            while self.step < run.end:
                started = time.perf_counter()
                logs = self._update(run, next(batches))
                self._train_time += time.perf_counter() - started
                self._report(run, logs, bar)
                self._hooks(run)
        finally:
            del batches  # stops the workers
            if bar is not None:
                bar.close()

    def _update(self, run: StageRun, batch: dict) -> dict[str, float]:
        """One generator (and discriminator) update and its schedules' step."""
        cfg = self.cfg
        scale, made = batch["scale"], batch
        batch = {
            "hr": self._to_device(made["hr"]),
            "lr": self._to_device(made["lr"]),
            "scale": tuple(scale) if isinstance(scale, list) else scale,  # pinning makes lists
            "acquisition": made.get("acquisition"),
        }
        if "noise" in made:  # what the degradation added: a noise-aware model learns it
            batch["noise"] = self._to_device(made["noise"])
        warm = run.index == 0 and self.step < cfg.warmup_l1_steps
        use = dataclasses.replace(run.loss, adversarial=0.0, perceptual=0.0) if warm else run.loss
        gan = use.adversarial > 0
        logs = gan_step(
            batch, self.g, self.d, run.opt_g, run.opt_d if gan else None,
            use, self.vgg, self._autocast(),
        )  # fmt: skip
        run.sched_g.step()
        if self.average is not None:
            self.average.update(self.generator)
        if run.sched_d is not None and gan:
            run.sched_d.step()
        self.step += 1
        logs["scale"] = batch["scale"]
        return logs

    def _report(self, run: StageRun, logs: dict, bar) -> None:
        """Progress bar, and every ``log_every`` updates the losses and the speed."""
        scale = logs.pop("scale")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(l1=f"{logs['l_g_pix']:.4f}", s=_scale_text(scale))
        if self.step % self.cfg.log_every == 0:
            logs["steps_per_s"] = self.cfg.log_every / max(self._train_time, 1e-9)
            logs["lr_g"] = run.opt_g.param_groups[0]["lr"]
            self._train_time = 0.0
            self._log({f"train/{k}": v for k, v in logs.items()}, self.step)

    def _hooks(self, run: StageRun) -> None:
        """Validation (or sample images) and checkpoints at their intervals and stage end."""
        cfg = self.cfg
        end_of_stage = self.step == run.end
        if cfg.validate_every and (self.step % cfg.validate_every == 0 or end_of_stage):
            self.validate()
        elif cfg.sample_every and self.step % cfg.sample_every == 0:
            self.write_samples()
        if self.step % cfg.checkpoint_every == 0 or end_of_stage:
            self.checkpoint(run)

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
    def validate(self) -> dict[str, float]:
        """Scores of :class:`~metasrgan.train.validation.Validator` (rank 0), logged; keeps
        ``best.safetensors``: the highest mean PSNR gain over the best classical baseline,
        averaged over every validation degradation and scale."""
        if not self.dist.main:
            return {}
        served, was_training = self.served, self.served.training
        served.eval()
        results = self.validator.scores(served)
        if not results:
            served.train(was_training)
            return {}
        self._log(results, self.step)
        self.write_samples()
        served.train(was_training)
        gain = results["val/psnr_gain_mean"]
        if gain > self.best_gain:
            self.best_gain = gain
            save_model(
                served, self.run_dir / "checkpoints" / "best.safetensors",
                extra={**self._model_extra(), "val": results},
            )  # fmt: skip
        return results

    def write_samples(self) -> None:
        """A bicubic | generator | HR panel of the first validation image to TensorBoard."""
        if self.writer is None:
            return
        served = self.served
        was_training = served.training
        served.eval()
        panel = self.validator.panel(served)
        if panel is not None:
            self.writer.add_image(*panel, self.step)
        served.train(was_training)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, run: StageRun) -> None:
        """``last.safetensors`` (the served network) and the full training state (rank 0)."""
        if not self.dist.main:
            return
        save_model(
            self.served, self.run_dir / "checkpoints" / "last.safetensors",
            extra=self._model_extra(),
        )  # fmt: skip
        save_state(
            self.run_dir / "state", step=self.step, stage=run.index,
            generator=self.generator, discriminator=self.discriminator,
            opt_g=run.opt_g, opt_d=run.opt_d, sched_g=run.sched_g, sched_d=run.sched_d,
            extra={"best_gain": self.best_gain if math.isfinite(self.best_gain) else None},
            extra_tensors=self.average.state_tensors() if self.average is not None else None,
        )  # fmt: skip
        if self.writer is not None:
            self.writer.flush()


def _scale_text(scale) -> str:
    return "x".join(f"{v:g}" for v in scale) if isinstance(scale, tuple) else f"{scale:.1f}"


__all__ = ["Trainer"]
