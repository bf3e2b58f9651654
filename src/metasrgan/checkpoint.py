"""Self-describing model files: safetensors weights + the model spec and config as JSON.

``model.safetensors`` carries the spec in its header metadata too, so a model can be rebuilt
from that one file; ``model.json`` beside it is the human-readable copy.  Nothing is ever
unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metasrgan.registry import ModelSpec, make

FORMAT = "metasrgan-model/1"


class CheckpointError(ValueError):
    pass


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make outputs private
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON stored in the file's header (spec, config, training facts)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as err:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if "metasrgan" in header:
        return json.loads(header["metasrgan"])
    side = sidecar_path(path)
    if side.is_file():
        return json.loads(side.read_text())
    raise CheckpointError(f"{path}: no model spec in its header and no {side.name} beside it")


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", strict: bool = True
) -> nn.Module:
    """Rebuild a model from its file alone and load its weights (eval mode)."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    model = make(meta["model"])
    state = load_file(str(path), device="cpu")
    result = model.load_state_dict(state, strict=strict)
    model.metadata = meta  # type: ignore[attr-defined]
    del result
    return model.to(device).eval()


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a model file's weights into an existing model (e.g. ``--init-from``)."""
    from safetensors.torch import load_file

    state = load_file(str(path), device="cpu")
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit this model: {err}") from None
    return model
