"""Resumable training state without pickle: tensors in safetensors, the rest in JSON.

``state.safetensors`` holds the generator, discriminator, both optimizers' tensors and the
RNG states; ``state.json`` the step, stage, schedulers, optimizer hyper-parameters.  The
pair is written into ``state.tmp/`` and swapped in by renaming folders, so a crash at any
moment leaves one complete pair (``state/``, or ``state.old/`` between the two renames,
which :func:`read_state` falls back to); the step is stored in both files and checked.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


def _split_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict) -> None:
    sd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    meta[prefix] = {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer(prefix: str, tensors: dict, meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta[prefix]["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    groups = meta[prefix]["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def save_state(
    directory: Path,
    *,
    step: int,
    stage: int,
    generator: nn.Module,
    discriminator: nn.Module | None,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer | None,
    sched_g: Any,
    sched_d: Any | None,
    extra: dict[str, Any] | None = None,
) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"step": step, "stage": stage, **(extra or {})}
    for k, v in generator.state_dict().items():
        tensors[f"generator.{k}"] = v.detach().cpu().contiguous()
    if discriminator is not None:
        for k, v in discriminator.state_dict().items():
            tensors[f"discriminator.{k}"] = v.detach().cpu().contiguous()
    _split_optimizer(opt_g, "opt_g", tensors, meta)
    meta["sched_g"] = sched_g.state_dict()
    if opt_d is not None:
        _split_optimizer(opt_d, "opt_d", tensors, meta)
        meta["sched_d"] = sched_d.state_dict()
    tensors["rng.torch"] = torch.get_rng_state()
    tmp, old = _sibling(directory, "tmp"), _sibling(directory, "old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / STATE_TENSORS), metadata={"step": str(step)})
    (tmp / STATE_JSON).write_text(json.dumps(meta, indent=1))
    if directory.exists():  # always complete: it only ever arrives by the rename below
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def _sibling(directory: Path, suffix: str) -> Path:
    return directory.with_name(f"{directory.name}.{suffix}")


def _complete(directory: Path) -> bool:
    return (directory / STATE_JSON).is_file() and (directory / STATE_TENSORS).is_file()


def read_state(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not _complete(directory) and _complete(_sibling(directory, "old")):
        directory = _sibling(directory, "old")  # interrupted between the two renames
    meta_path, tensor_path = directory / STATE_JSON, directory / STATE_TENSORS
    if not _complete(directory):
        raise FileNotFoundError(f"no training state in {directory} (nothing to resume)")
    meta = json.loads(meta_path.read_text())
    with safe_open(str(tensor_path), framework="pt") as f:
        stamped = (f.metadata() or {}).get("step")
    if stamped is not None and int(stamped) != int(meta["step"]):
        raise ValueError(
            f"{directory}: {STATE_TENSORS} is from step {stamped} but {STATE_JSON} from step "
            f"{meta['step']}; the state is inconsistent and cannot be resumed exactly"
        )
    return meta, load_file(str(tensor_path))


def restore_models(
    tensors: dict[str, torch.Tensor], generator: nn.Module, discriminator: nn.Module | None
) -> None:
    def sub(prefix):
        n = len(prefix) + 1
        return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

    generator.load_state_dict(sub("generator"))
    if discriminator is not None:
        discriminator.load_state_dict(sub("discriminator"))
    torch.set_rng_state(tensors["rng.torch"])


def restore_optimizers(meta: dict, tensors: dict, opt_g, opt_d, sched_g, sched_d) -> None:
    opt_g.load_state_dict(_join_optimizer("opt_g", tensors, meta))
    sched_g.load_state_dict(meta["sched_g"])
    if opt_d is not None and "opt_d" in meta:
        opt_d.load_state_dict(_join_optimizer("opt_d", tensors, meta))
        sched_d.load_state_dict(meta["sched_d"])
