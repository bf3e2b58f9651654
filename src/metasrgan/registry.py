"""A small explicit registry: ``{"name": ..., "args": {...}}`` specs build models.

Modelled on LIIF's ``models.py``: a dict, a decorator and :func:`make`.  No folder
scanning; every registered model is imported by :mod:`metasrgan.models`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

ModelSpec = dict[str, Any]
_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    """Class decorator adding a model under ``name``."""

    def add(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise KeyError(f"model {name!r} is registered twice")
        _MODELS[name] = cls
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return add


def available() -> list[str]:
    import metasrgan.models  # noqa: F401  (fills the registry)

    return sorted(_MODELS)


def constructor(name: str) -> Callable[..., nn.Module]:
    """The class registered as ``name`` (for checking a spec's arguments before building)."""
    import metasrgan.models  # noqa: F401

    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def make(spec: ModelSpec) -> nn.Module:
    """Build a model from ``{"name": str, "args": dict}``; the spec is kept on the model."""
    import metasrgan.models  # noqa: F401

    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a model spec is {{'name': ..., 'args': {{...}}}}, got {spec!r}")
    unknown = set(spec) - {"name", "args"}
    if unknown:
        raise ValueError(f"unknown keys in model spec: {sorted(unknown)}")
    name = spec["name"]
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}")
    args = dict(spec.get("args") or {})
    try:
        model = _MODELS[name](**args)
    except TypeError as err:
        raise ValueError(f"bad arguments for model {name!r}: {err}") from None
    model.spec = {"name": name, "args": copy.deepcopy(args)}  # type: ignore[attr-defined]
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
