"""Where a training run lives and who runs it: the run folder (never an existing one), the
``torchrun`` process group, the weights a run starts from and the checks before it starts,
and its logs (TensorBoard, ``log.jsonl``: what a resumed run keeps of them)."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from metasrgan.scale import parse_scales
from metasrgan.train.config import TrainConfig

log = logging.getLogger("metasrgan.train")  # -v/-q (metasrgan.logs)


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


def agree(dist: Dist, value):
    """Rank 0's ``value`` on every rank (``value`` itself in a single process)."""
    if dist.world_size <= 1:
        return value
    import torch.distributed as tdist

    box = [value if dist.main else None]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def agree_run_dir(dist: Dist, root: Path, name: str) -> Path:
    """``new_run_dir`` on rank 0, the same folder on every rank (never an existing one)."""
    return Path(agree(dist, str(new_run_dir(root, name)) if dist.main else None))


def wait_for_file(path: Path, failed: Path, poll_s: float = 0.2) -> None:
    """Until ``path`` exists (written atomically by rank 0); ``failed`` holds rank 0's error.

    A file, not a collective: reading a large data set on rank 0 may take longer than a
    process group's timeout."""
    while not path.exists():
        if failed.exists():
            raise RuntimeError(f"rank 0 could not prepare {path.name}: {failed.read_text()}")
        time.sleep(poll_s)


def load_init_weights(generator: nn.Module, path: str) -> None:
    """``--init-from``: a model file's weights.  A generator with more inputs than the file's
    (an acquisition-conditioned or noise-aware model from an older one) gets zero weights
    for the new input columns, and keeps its own initial values for parameters the file
    lacks (zero-initialised where that matters), so it starts as exactly that model."""
    from safetensors.torch import load_file

    from metasrgan.checkpoint import load_weights

    own = generator.state_dict()
    try:
        state = load_file(str(path))
    except Exception:  # not a safetensors file: load_weights says what is wrong
        state = None
    if state is None or not _only_new_inputs(state, own):
        load_weights(generator, path)  # exact, or an error that names the file and tensor
        return
    for key, value in own.items():
        old = state.get(key)
        if old is None:
            state[key] = value
        elif old.shape != value.shape:
            widened = value.new_zeros(value.shape)
            widened[:, : old.shape[1]] = old
            state[key] = widened
    generator.load_state_dict(state, strict=True)


def _only_new_inputs(state: dict, own: dict) -> bool:
    """Whether the file differs from the model only by parameters the model adds and by
    input columns (dimension 1) it widens."""
    if set(state) - set(own):
        return False
    differs = False
    for key, new in own.items():
        old = state.get(key)
        if old is None:
            differs = True
        elif old.shape != new.shape:
            widened = old.dim() == new.dim() > 1 and old.shape[1] < new.shape[1]
            if not widened or old.shape[:1] + old.shape[2:] != new.shape[:1] + new.shape[2:]:
                return False
            differs = True
    return differs


def truncate_log(path: Path, step: int) -> None:
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


def tensorboard_writer(run_dir: Path, purge_step: int | None):
    """TensorBoard's writer for ``run_dir/tensorboard`` (None without the optional extra);
    ``purge_step``: events after it are dropped (a resumed run)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        log.info("tensorboard is not installed: logging to log.jsonl only")
        return None
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)


def append_log(path: Path, step: int, values: dict[str, float]) -> None:
    """One JSON line ``{"step": ..., **values}`` (see :func:`truncate_log`)."""
    with open(path, "a") as f:
        f.write(json.dumps({"step": step, **values}) + "\n")


def check_fixed_scale(generator: nn.Module, cfg: TrainConfig) -> None:
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
