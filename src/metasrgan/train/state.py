"""Resumable training state without pickle: tensors in safetensors, the rest in JSON.

``state.safetensors`` holds the generator, discriminator, both optimizers' tensors, the
RNG states and the generator's weight average if any; ``state.json`` the step, stage,
schedulers, optimizer hyper-parameters.  The pair is written into ``state.tmp/`` and
swapped in by renaming folders, so a crash at any moment leaves one complete pair
(``state/``, or ``state.old/`` between the two renames, which :func:`read_state` falls
back to); the step is stored in both files and checked.

Reading checks before anything is restored: both files parse (a pickle or garbage is
refused, never unpickled), and every tensor's name and shape matches the models and
optimizers it is restored into; errors are :class:`~metasrgan.checkpoint.CheckpointError`
naming the file and the tensor.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metasrgan.atomic import deferred_interrupts
from metasrgan.checkpoint import CheckpointError, check_tensor_shapes, safetensors_shapes

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
    extra_tensors: dict[str, torch.Tensor] | None = None,
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
    tensors.update(extra_tensors or {})  # e.g. the weight average's (metasrgan.train.average)
    tmp, old = _sibling(directory, "tmp"), _sibling(directory, "old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file(tensors, str(tmp / STATE_TENSORS), metadata={"step": str(step)})
        (tmp / STATE_JSON).write_text(json.dumps(meta, indent=1))
        with deferred_interrupts():  # a Ctrl+C waits for the two renames
            if directory.exists():  # always complete: it only ever arrives by this rename
                shutil.rmtree(old, ignore_errors=True)
                os.replace(directory, old)
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _sibling(directory: Path, suffix: str) -> Path:
    return directory.with_name(f"{directory.name}.{suffix}")


def _complete(directory: Path) -> bool:
    return (directory / STATE_JSON).is_file() and (directory / STATE_TENSORS).is_file()


class StateTensors(dict):
    """The tensors of a training state, remembering the file they came from (for messages)."""

    path: Path


def read_state(directory: Path) -> tuple[dict[str, Any], StateTensors]:
    from safetensors.torch import load_file

    if not _complete(directory) and _complete(_sibling(directory, "old")):
        directory = _sibling(directory, "old")  # interrupted between the two renames
    meta_path, tensor_path = directory / STATE_JSON, directory / STATE_TENSORS
    if not _complete(directory):
        raise FileNotFoundError(f"no training state in {directory} (nothing to resume)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{meta_path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        raise CheckpointError(f"{meta_path}: not a training state (no integer 'step')")
    _, header = safetensors_shapes(tensor_path)  # refuses pickles, garbage, truncation
    stamped = header.get("step")
    if stamped is not None and str(stamped) != str(meta["step"]):
        raise CheckpointError(
            f"{directory}: {STATE_TENSORS} is from step {stamped} but {STATE_JSON} from step "
            f"{meta['step']}; the state is inconsistent and cannot be resumed exactly"
        )
    tensors = StateTensors(load_file(str(tensor_path)))
    tensors.path = tensor_path
    return meta, tensors


def _where(tensors: dict) -> str:
    return str(getattr(tensors, "path", "the training state"))


def restore_models(
    tensors: dict[str, torch.Tensor], generator: nn.Module, discriminator: nn.Module | None
) -> None:
    """Load the weights and the RNG, after checking every tensor against the models."""

    def sub(prefix):
        n = len(prefix) + 1
        return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

    where = _where(tensors)
    for prefix, model in (("generator", generator), ("discriminator", discriminator)):
        if model is None:
            continue
        expected = {f"{prefix}.{k}": tuple(v.shape) for k, v in model.state_dict().items()}
        found = {f"{prefix}.{k}": tuple(v.shape) for k, v in sub(prefix).items()}
        check_tensor_shapes(where, expected, found)
    rng = tensors.get("rng.torch")
    if rng is None or rng.dtype != torch.uint8 or rng.dim() != 1:
        raise CheckpointError(f"{where}: no valid rng.torch tensor (uint8 RNG state)")
    generator.load_state_dict(sub("generator"))
    if discriminator is not None:
        discriminator.load_state_dict(sub("discriminator"))
    try:
        torch.set_rng_state(rng)
    except RuntimeError as err:
        raise CheckpointError(f"{where}: rng.torch is not a valid RNG state ({err})") from None


def _check_optimizer(where: str, opt, saved: dict) -> None:
    """Saved Adam moments must have their parameter's shape: torch would only fail (or
    silently broadcast) at the first step."""
    params = [p for group in opt.param_groups for p in group["params"]]
    saved_groups = saved["param_groups"]
    if len(saved_groups) != len(opt.param_groups):
        raise CheckpointError(
            f"{where}: the optimizer state has {len(saved_groups)} parameter groups, the "
            f"optimizer {len(opt.param_groups)}"
        )
    for idx, entry in saved["state"].items():
        if not 0 <= idx < len(params):
            raise CheckpointError(f"{where}: optimizer state for parameter {idx} of {len(params)}")
        for key, value in entry.items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != params[idx].shape:
                raise CheckpointError(
                    f"{where}: optimizer tensor {idx}.{key} has shape {tuple(value.shape)} but "
                    f"its parameter {tuple(params[idx].shape)}"
                )


def restore_optimizers(meta: dict, tensors: dict, opt_g, opt_d, sched_g, sched_d) -> None:
    where = _where(tensors)
    pairs = [("opt_g", opt_g, "sched_g", sched_g)]
    if opt_d is not None and "opt_d" in meta:
        pairs.append(("opt_d", opt_d, "sched_d", sched_d))
    for prefix, opt, sched_key, sched in pairs:
        try:
            saved = _join_optimizer(prefix, tensors, meta)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{where}: no usable {prefix} optimizer state ({err})") from None
        _check_optimizer(f"{where} ({prefix})", opt, saved)
        try:
            opt.load_state_dict(saved)
            sched.load_state_dict(meta[sched_key])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{where}: cannot restore {prefix} ({err})") from None
