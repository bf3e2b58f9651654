"""What an evaluation compares: classical interpolations and networks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch

from metasrgan.api.options import ADAPT_AUTO
from metasrgan.scale import as_fraction


@dataclass
class Method:
    """A classical interpolation (``model is None``: see :mod:`metasrgan.interpolation`) or
    a network."""

    label: str
    model: torch.nn.Module | None = None
    params: int | None = None
    fixed_scale: Fraction | None = None
    source: str = "bicubic"
    notes: list[str] = field(default_factory=list)
    interpolation: str | None = None
    adapt: int | str = 0
    """Self-supervised adaptation (:mod:`metasrgan.adapt`) before each source's slices are
    upscaled at each scale: ``"auto"`` or a number of updates, fitted on their
    low-resolution inputs only, as ``upscale --adapt`` fits on the scan it is given.
    Networks get ``upscale``'s default, ``"auto"``."""
    ensemble: bool = False
    """Each slice upscaled as the mean of its flipped and transposed copies' upscales, as
    ``upscale --ensemble`` does (:mod:`metasrgan.ensemble`)."""

    @property
    def classical(self) -> bool:
        return self.model is None

    def runs_at(self, scale: Fraction) -> bool:
        return self.fixed_scale is None or self.fixed_scale == scale


def classical_method(name: str) -> Method:
    from metasrgan.interpolation import TITLES

    return Method(TITLES[name], source=name, interpolation=name)


def bicubic_method() -> Method:
    return classical_method("bicubic")


def classical_methods() -> list[Method]:
    """Every baseline the tables compare against (bicubic, Lanczos, B-spline, sinc)."""
    from metasrgan.interpolation import CLASSICAL

    return [classical_method(name) for name in CLASSICAL]


def load_method(source: str, device: torch.device | str = "cpu", label: str | None = None):
    """A model file (.safetensors) or ``shipped`` (the model shipped in the package)."""
    from metasrgan import inference
    from metasrgan.registry import count_parameters

    if source == "shipped":
        model = inference.load(None, device)
        name = label or "Meta-SRGAN (shipped)"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        model = inference.load(path, device)
        name = label or _model_label(model, path)
    model.eval()
    notes = []
    if getattr(model, "metadata", {}).get("untrained"):
        notes.append("UNTRAINED (no shipped model in this install): outputs are meaningless")
        if label is None:
            name += " [untrained]"
    fixed = getattr(model, "fixed_scale", None)
    return Method(
        label=name,
        model=model,
        params=count_parameters(model),
        fixed_scale=None if fixed is None else as_fraction(fixed),
        source=source,
        notes=notes,
        adapt=ADAPT_AUTO,
    )


def adapted_method(method: Method, adapt: int | str) -> Method:
    """``method``'s network adapted as ``adapt`` says (``"auto"``, or a number of updates,
    0 for none); labelled ``+adapt N`` unless ``"auto"`` (``upscale``'s default)."""
    if method.model is None:
        raise ValueError("only networks adapt")
    label = method.label if adapt == ADAPT_AUTO else f"{method.label} +adapt {adapt}"
    return dataclasses.replace(method, label=label, adapt=adapt, notes=list(method.notes))


def ensembled_method(method: Method) -> Method:
    """``method``'s network as a self-ensemble, labelled ``+ensemble``."""
    if method.model is None:
        raise ValueError("only networks are ensembled (interpolations are symmetric)")
    return dataclasses.replace(method, label=f"{method.label} +ensemble", ensemble=True,
                               notes=list(method.notes))  # fmt: skip


def _model_label(model: torch.nn.Module, path: Path) -> str:
    """The file's stem; a run's ``checkpoints/best`` becomes ``<run>/best``."""
    stem = path.name.removesuffix(".safetensors")
    if path.parent.name == "checkpoints" and path.parent.parent.name:
        return f"{path.parent.parent.name}/{stem}"
    return stem


def unique_labels(methods: Sequence[Method]) -> None:
    """Make labels distinct (``name``, ``name (2)``...) so tables and plots stay readable."""
    seen: dict[str, int] = {}
    for m in methods:
        n = seen.get(m.label, 0)
        seen[m.label] = n + 1
        if n:
            m.label = f"{m.label} ({n + 1})"
