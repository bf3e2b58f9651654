"""Self-describing model files: safetensors weights + the model spec and config as JSON.

``model.safetensors`` carries the spec in its header metadata too, so a model can be rebuilt
from that one file; ``model.json`` beside it is the human-readable copy.  Nothing is ever
unpickled.

Loading checks before it builds or allocates anything: the file is safetensors (a PyTorch
pickle is named as such and refused), the spec names a registered model with arguments its
constructor takes, of the types of its defaults and within :data:`MAX_INT_ARG`; the model
is then built on the ``meta`` device (no memory) to count its parameters against
:data:`MAX_PARAMETERS` and to compare every tensor's name and shape with the file's header.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metasrgan.atomic import atomic_write
from metasrgan.registry import ModelSpec, constructor, make

__all__ = [
    "MAX_INT_ARG",
    "MAX_PARAMETERS",
    "CheckpointError",
    "atomic_write",
    "check_tensor_shapes",
    "load_model",
    "load_weights",
    "read_metadata",
    "safetensors_shapes",
    "save_model",
    "validate_spec",
]

FORMAT = "metasrgan-model/1"
MAX_PARAMETERS = 500_000_000
"""Largest model a file may ask for (EDSR, the largest here, has 40.7 million)."""
MAX_INT_ARG = 1024
"""Bound on every integer argument of a model spec (widths, depths, hidden sizes)."""
MAX_SEQUENCE_ARG = 64


class CheckpointError(ValueError):
    """A model file or training state that cannot be used; the message names the file."""


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    spec: ModelSpec | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` sidecar atomically."""
    from safetensors.torch import save_file

    spec = spec or getattr(model, "spec", None)
    if spec is None:
        raise CheckpointError("model has no spec; build it with metasrgan.registry.make")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"model files end in .safetensors, got {path.name}")
    meta = {"format": FORMAT, "model": spec, **(extra or {})}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "metasrgan": json.dumps(meta)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    atomic_write(sidecar_path(path), lambda tmp: Path(tmp).write_text(text))
    return path


# ---------------------------------------------------------------------------- the file


def _refuse_pickles(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] == b"PK\x03\x04" or (len(head) > 1 and head[0] == 0x80 and head[1] <= 5):
        raise CheckpointError(
            f"{path}: a PyTorch pickle (torch.save), not a safetensors file; metasrgan never "
            "unpickles files (that can run code). Convert it where you trust it: "
            "safetensors.torch.save_file(torch.load(f, weights_only=True), 'x.safetensors')"
        )


def safetensors_shapes(path: str | os.PathLike) -> tuple[dict[str, tuple[tuple, str]], dict]:
    """``({tensor: (shape, dtype)}, header metadata)`` from the header alone (no data read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")
    try:
        _refuse_pickles(path)
        with safe_open(str(path), framework="pt") as f:
            shapes = {}
            for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                piece = f.get_slice(key)
                shapes[key] = (tuple(piece.get_shape()), str(piece.get_dtype()))
            return shapes, dict(f.metadata() or {})
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied") from None
    except CheckpointError:
        raise
    except Exception as err:  # safetensors raises several types for corrupt files
        reason = str(err)
        if "incomplete metadata" in reason or "not fully covered" in reason:
            reason = f"truncated (the data ends before the tensors its header lists): {reason}"
        raise CheckpointError(f"{path}: not a readable safetensors file ({reason})") from None


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON stored in the file's header (spec, config, training facts)."""
    path = Path(path)
    _, header = safetensors_shapes(path)
    source, text = f"{path} (header)", header.get("metasrgan")
    if text is None:
        side = sidecar_path(path)
        if not side.is_file():
            raise CheckpointError(
                f"{path}: no model spec in its header and no {side.name} beside it"
            )
        source, text = str(side), side.read_text(errors="replace")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{source}: the model description is not valid JSON ({err})"
        ) from None
    if not isinstance(meta, dict) or "model" not in meta:
        raise CheckpointError(f"{source}: no 'model' spec in the model description")
    return meta


# ---------------------------------------------------------------------------- the spec


def _check_value(where: str, key: str, value: Any, default: Any, depth: int = 0) -> None:
    if isinstance(value, bool) or value is None:
        ok = default is None or isinstance(default, bool) or value is None
    elif isinstance(value, int):
        if abs(value) > MAX_INT_ARG:
            raise CheckpointError(f"{where}: model argument {key}={value} exceeds {MAX_INT_ARG}")
        ok = default is None or (type(default) in (int, float) and not isinstance(default, bool))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise CheckpointError(f"{where}: model argument {key}={value} is not finite")
        ok = default is None or type(default) is float
    elif isinstance(value, str):
        ok = (default is None or isinstance(default, str)) and len(value) <= 256
    elif isinstance(value, (list, tuple)) and depth < 3:
        if len(value) > MAX_SEQUENCE_ARG:
            raise CheckpointError(
                f"{where}: model argument {key} has {len(value)} entries (at most "
                f"{MAX_SEQUENCE_ARG})"
            )
        ok = default is None or isinstance(default, (list, tuple))
        for item in value:
            _check_value(where, key, item, None, depth + 1)
    elif isinstance(value, dict) and depth < 3:
        if len(value) > MAX_SEQUENCE_ARG or not all(isinstance(k, str) for k in value):
            raise CheckpointError(f"{where}: model argument {key} is not a small string mapping")
        ok = default is None or isinstance(default, dict)
        for name, item in value.items():
            _check_value(where, f"{key}.{name}", item, None, depth + 1)
    else:
        ok = False
    if not ok:
        wanted = type(default).__name__ if default is not None else "a number, string or list"
        raise CheckpointError(
            f"{where}: model argument {key}={value!r} should be {wanted} like its default "
            f"{default!r}"
        )


def validate_spec(spec: Any, where: str = "model spec") -> ModelSpec:
    """Check ``{"name", "args"}`` against the registry and the limits, building nothing real.

    The constructor's signature decides which arguments exist (new optional arguments need
    no change here); the model is then built on the ``meta`` device to count parameters.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise CheckpointError(f"{where}: a model spec is {{'name': ..., 'args': {{...}}}}")
    unknown = set(spec) - {"name", "args"}
    if unknown:
        raise CheckpointError(f"{where}: unknown keys in the model spec: {sorted(unknown)}")
    try:
        cls = constructor(spec["name"])
    except KeyError as err:
        raise CheckpointError(f"{where}: {err.args[0]}") from None
    args = spec.get("args") or {}
    if not isinstance(args, dict):
        raise CheckpointError(f"{where}: the model's args must be a mapping, got {args!r}")
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key, value in args.items():
        if key not in params and not takes_any:
            known = ", ".join(k for k in params if k != "self")
            raise CheckpointError(
                f"{where}: model {spec['name']!r} has no argument {key!r} (it takes {known})"
            )
        default = params[key].default if key in params else None
        _check_value(where, key, value, None if default is inspect.Parameter.empty else default)
    try:
        with torch.device("meta"):
            skeleton = cls(**args)
    except Exception as err:  # the constructor's own checks (bad choices, inconsistent sizes)
        raise CheckpointError(f"{where}: bad arguments for model {spec['name']!r}: {err}") from None
    count = sum(t.numel() for t in skeleton.state_dict().values())
    if count > MAX_PARAMETERS:
        raise CheckpointError(
            f"{where}: model {spec['name']!r} with {args} would have {count:,} parameters; "
            f"the limit is {MAX_PARAMETERS:,}"
        )
    return {"name": spec["name"], "args": dict(args)}


def check_tensor_shapes(
    where: str, expected: dict[str, tuple], found: dict[str, tuple], strict: bool = True
) -> None:
    """Every tensor the model needs is in ``found`` with its shape (and nothing else when
    ``strict``); the message names ``where`` and the first tensors that differ."""

    def listed(names: list[str]) -> str:
        return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")

    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if strict and missing:
        raise CheckpointError(f"{where}: missing tensor(s) {listed(missing)}")
    if strict and extra:
        hint = ""
        if any(n.startswith(("generator.", "opt_g.")) for n in extra):
            hint = " (this is a training state: continue it with --resume RUN)"
        raise CheckpointError(f"{where}: unexpected tensor(s) {listed(extra)}{hint}")
    for name in sorted(set(expected) & set(found)):
        if tuple(found[name]) != tuple(expected[name]):
            raise CheckpointError(
                f"{where}: tensor {name} has shape {tuple(found[name])} but the model needs "
                f"{tuple(expected[name])}"
            )


def _load_checked(path: Path, model_state: dict[str, torch.Tensor], strict: bool) -> dict:
    """The file's tensors once names, shapes (from the header, before reading any data),
    kinds (floating point or integer) and finiteness all fit ``model_state``."""
    from safetensors.torch import load_file

    shapes, _ = safetensors_shapes(path)
    expected = {k: tuple(v.shape) for k, v in model_state.items()}
    check_tensor_shapes(str(path), expected, {k: s for k, (s, _) in shapes.items()}, strict)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as err:
        raise CheckpointError(f"{path}: the tensors cannot be read ({err})") from None
    for name, tensor in state.items():
        wanted = model_state.get(name)
        if wanted is not None and tensor.is_floating_point() != wanted.is_floating_point():
            raise CheckpointError(
                f"{path}: tensor {name} is {tensor.dtype} but the model needs {wanted.dtype}"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or Inf values")
    return state


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", strict: bool = True
) -> nn.Module:
    """Rebuild a model from its file alone and load its weights (eval mode).

    Raises:
        CheckpointError: naming the file and what is wrong (see the module docstring).
    """
    path = Path(path)
    meta = read_metadata(path)
    spec = validate_spec(meta["model"], f"{path}")
    with torch.device("meta"):
        skeleton = constructor(spec["name"])(**spec["args"])
    state = _load_checked(path, skeleton.state_dict(), strict)
    model = make(spec)
    model.load_state_dict(state, strict=strict)
    model.metadata = meta  # type: ignore[attr-defined]
    return model.to(device).eval()


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a model file's weights into an existing model (e.g. ``--init-from``)."""
    state = _load_checked(Path(path), model.state_dict(), strict)
    model.load_state_dict(state, strict=strict)
    return model
