"""Resumable training state without pickle: tensors in safetensors, the rest in JSON.

``state.safetensors`` holds the generator, discriminator, both optimizers' tensors and the
RNG states; ``state.json`` the step, stage, schedulers, optimizer hyper-parameters.  Both
are written atomically (temporary file + rename), the JSON last, so a crash mid-write
leaves the previous state usable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metasrgan.checkpoint import atomic_write

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

    directory.mkdir(parents=True, exist_ok=True)
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
    atomic_write(directory / STATE_TENSORS, lambda tmp: save_file(tensors, tmp))
    text = json.dumps(meta, indent=1)
    atomic_write(directory / STATE_JSON, lambda tmp: Path(tmp).write_text(text))


def read_state(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    meta_path, tensor_path = directory / STATE_JSON, directory / STATE_TENSORS
    if not meta_path.is_file() or not tensor_path.is_file():
        raise FileNotFoundError(f"no training state in {directory} (nothing to resume)")
    return json.loads(meta_path.read_text()), load_file(str(tensor_path))


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
