"""A small explicit registry: ``{"name": ..., "args": {...}}`` specs build things.

Modelled on LIIF's ``models.py``: a dict, a decorator and ``make``.  No folder scanning.  One
:class:`Registry` class serves every extension point: models (:data:`MODELS`, filled by
importing :mod:`metasrgan.models`), degradation steps (:mod:`metasrgan.degradations.steps`)
and data sources (:mod:`metasrgan.data.sources`).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from typing import Any

ModelSpec = dict[str, Any]


class Registry:
    """``name -> constructor``, filled by :meth:`register`; :meth:`make` builds a spec.

    Args:
        what: what is registered, for messages ("model", "degradation step", ...).
        fill: a module whose import registers everything (imported on first use).
        error: the exception for unknown names.
    """

    def __init__(self, what: str, fill: str | None = None, error: type[Exception] = KeyError):
        self.what = what
        self.fill = fill
        self.error = error
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable:
        """Decorator adding a class or function under ``name``."""

        def add(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise KeyError(f"{self.what} {name!r} is registered twice")
            self._entries[name] = obj
            obj.registry_name = name  # type: ignore[attr-defined]
            return obj

        return add

    def _filled(self) -> dict[str, Callable[..., Any]]:
        if self.fill:
            importlib.import_module(self.fill)
        return self._entries

    def names(self) -> list[str]:
        return sorted(self._filled())

    def constructor(self, name: str) -> Callable[..., Any]:
        """What is registered as ``name`` (e.g. to check a spec's arguments before building)."""
        entries = self._filled()
        if name not in entries:
            raise self.error(
                f"unknown {self.what} {name!r}; available: {', '.join(sorted(entries))}"
            )
        return entries[name]

    def make(self, spec: dict[str, Any] | str, keep_spec: bool = False) -> Any:
        """Build ``{"name": str, "args": dict}`` (or a bare name); ``keep_spec`` stores the
        spec on the result as ``.spec`` (models: their files describe themselves)."""
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or "name" not in spec:
            raise ValueError(
                f"a {self.what} spec is {{'name': ..., 'args': {{...}}}}, got {spec!r}"
            )
        unknown = set(spec) - {"name", "args"}
        if unknown:
            raise ValueError(f"unknown keys in {self.what} spec: {sorted(unknown)}")
        name = spec["name"]
        build = self.constructor(name)
        args = dict(spec.get("args") or {})
        try:
            made = build(**args)
        except TypeError as err:
            raise ValueError(f"bad arguments for {self.what} {name!r}: {err}") from None
        if keep_spec:
            made.spec = {"name": name, "args": copy.deepcopy(args)}
        return made


MODELS = Registry("model", fill="metasrgan.models")
"""The networks (Meta-SRGAN, SRGAN, EDSR, the discriminator, VGG19 features)."""


def register(name: str) -> Callable:
    """Class decorator adding a model under ``name``."""
    return MODELS.register(name)


def available() -> list[str]:
    return MODELS.names()


def constructor(name: str) -> Callable[..., Any]:
    """The model class registered as ``name`` (for checking a spec before building)."""
    return MODELS.constructor(name)


def make(spec: ModelSpec) -> Any:
    """Build a model from ``{"name": str, "args": dict}``; the spec is kept on the model."""
    if isinstance(spec, str):
        raise ValueError(f"a model spec is {{'name': ..., 'args': {{...}}}}, got {spec!r}")
    return MODELS.make(spec, keep_spec=True)


def with_args(model, **args) -> Any:
    """The same weights in a model built with ``args`` changed: parameter-free options such
    as ``self_calibrate`` (the state must load exactly, so nothing trained is lost), on the
    model's device and in its training mode."""
    spec = {**model.spec, "args": {**(model.spec.get("args") or {}), **args}}
    new = make(spec)
    new.load_state_dict(model.state_dict(), strict=True)
    first = next(iter(model.parameters()), None)
    if first is not None:
        new = new.to(first.device)
    return new.train(model.training)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
