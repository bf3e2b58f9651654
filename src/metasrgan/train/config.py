"""Training configuration: YAML files validated into dataclasses (no exec/eval).

Unknown keys and values of the wrong type are errors that name the offending key, so a typo
never silently trains with a default.  A config has shared settings and a list of stages
(the paper: 360k updates on natural images, then 360k on BraTS starting from those weights);
a stage may override the loss weights, the data and the augmentation.  What a value must
satisfy is checked in :mod:`metasrgan.train.config_checks`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metasrgan import yamlio
from metasrgan.data.patches import Augment as AugmentConfig


class ConfigError(ValueError):
    pass


@dataclass
class LossConfig:
    """Generator loss ``l1 * L1 + adversarial * GAN + perceptual * VGG19-MSE``."""

    l1: float = 1.0
    adversarial: float = 0.001
    perceptual: float = 0.006
    vgg19: str | None = None
    """Path of torchvision's VGG19 weights (else $METASRGAN_VGG19 or torch.hub's cache)."""
    vgg19_download: bool = False
    noise_level: float = 0.0
    """Weight of the L1 loss of a noise-aware model's noise estimate against the noise the
    degradation added (in units of 1% of the range; 0 for clean inputs)."""


@dataclass
class OptimConfig:
    lr: float = 1.0e-4
    d_lr: float = 1.0e-4
    betas: tuple[float, float] = (0.9, 0.999)
    decay: float = 0.8
    decay_every: int = 60_000
    lr_scales: dict[str, float] = field(default_factory=dict)
    """Generator parameters whose names start with a key learn at ``lr`` times its value
    (e.g. ``{noise_estimator: 10}``: a few new parameters, trained fast beside the rest)."""
    ema: float = 0.0
    """Decay of a moving average of the generator's weights (e.g. 0.999, about the last
    1,000 updates), which is then what is validated and saved; 0 is off."""


@dataclass
class StageConfig:
    name: str
    steps: int
    data: list[dict[str, Any]]
    loss: LossConfig | None = None
    """Overrides the shared loss for this stage (e.g. an L1-only warm-up)."""
    augment: AugmentConfig | None = None
    degradation: Any = None
    """Overrides the shared degradation for this stage."""


@dataclass
class TrainConfig:
    name: str
    model: dict[str, Any]
    stages: list[StageConfig]
    discriminator: dict[str, Any] | None = field(
        default_factory=lambda: {"name": "discriminator", "args": {}}
    )
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 8
    patch_size: int = 96
    patches_per_image: int = 16
    scales: str | float | list[float] = "1.1:4.0:0.1"
    """``"START:STOP:STEP"`` (inclusive), one number, or a list; one is drawn per batch."""
    degradation: Any = "bicubic"
    """How LR patches are made: a preset name (``bicubic``: the paper's), a chain
    ``{acquisition, steps}`` or ``{mixture: [{weight, scales, preset | acquisition + steps}]}``
    (see :func:`metasrgan.degradations.make_plan`)."""
    warmup_l1_steps: int = 0
    """Updates at the start of the first stage with the L1 term only (0 in the paper)."""
    val_data: list[dict[str, Any]] = field(default_factory=list)
    val_scales: list[float] = field(default_factory=lambda: [1.5, 2.0, 3.0, 4.0])
    val_degradations: list[Any] = field(default_factory=list)
    """Validation LR: presets or chains, each optionally ``{preset: ..., scales: [...]}``;
    empty: the chains of the first stage's training degradation.  ``best`` is the
    checkpoint with the highest mean PSNR gain over the best classical baseline."""
    val_images: int = 16
    seed: int = 0
    checkpoint_every: int = 5_000
    validate_every: int = 5_000
    log_every: int = 100
    sample_every: int = 0
    """Write sample images to TensorBoard at this interval (0: at validation)."""
    device: str = "auto"
    amp: bool = True
    """bfloat16 autocast and channels-last on a GPU; ignored on the CPU."""
    threads: int = 0
    workers: int = 2
    """DataLoader worker processes that make the training batches (crops, degradations) beside
    the training process; 0: in the training process itself."""

    def stage_loss(self, stage: StageConfig) -> LossConfig:
        return stage.loss or self.loss

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for arg in options:
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        if len(options) == 1:  # X | None: the error of X itself is the clearest
            _coerce(value, options[0], where)
        names = [_describe(a) for a in args]
        raise ConfigError(f"{where}: expected {' or '.join(names)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(
            _coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def _describe(tp: Any) -> str:
    """A type as a config reader would name it."""
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp) or origin is dict:
        return "a mapping"
    if origin in (list, tuple):
        return "a list"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, str(tp)
    )


def _build(cls, data: dict[str, Any], where: str):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or 'config'}: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key is missing")
    return cls(**kwargs)


def val_chains(cfg: TrainConfig) -> list[tuple[str, Any, list[float]]]:
    """``(name, chain, scales)`` for validation (see ``TrainConfig.val_degradations``)."""
    from metasrgan.degradations import make_chain, make_plan
    from metasrgan.scale import parse_scales

    if not cfg.val_degradations:
        first = cfg.stages[0].degradation if cfg.stages else None
        plan = make_plan(first or cfg.degradation, parse_scales(cfg.scales, as_float=True))
        return [
            (o.chain.acquisition if len(plan.options) > 1 else "", o.chain, list(cfg.val_scales))
            for o in plan.options
        ]
    out = []
    for item in cfg.val_degradations:
        scales = list(cfg.val_scales)
        if isinstance(item, dict) and "preset" in item:
            item = dict(item)
            if "scales" in item:
                scales = list(parse_scales(item.pop("scales"), as_float=True))
            name = item.pop("preset")
            if item:
                raise ValueError(f"unknown keys beside preset: {sorted(item)}")
            chain = make_chain(name)
        else:
            chain = make_chain(item)
            name = chain.preset or chain.acquisition
        out.append((name, chain, scales))
    return out


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    if not isinstance(data, dict):
        raise ConfigError("a config is a YAML mapping")
    from metasrgan.train.config_checks import validate

    cfg = _build(TrainConfig, data, "")
    validate(cfg)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config; ``overrides`` are ``key.sub=value`` strings (YAML values)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yamlio.load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if data is None:
        data = {}
    for item in overrides or []:
        _apply_override(data, item)
    try:
        return config_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _apply_override(data: Any, item: str) -> None:
    """Set ``a.b.0.c=VALUE`` (VALUE read as YAML) inside the raw config mapping."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not KEY=VALUE")
    try:
        value = yamlio.load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({err})") from None
    node = data
    parts = key.split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {item!r}: {where} is not an index of that list")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"override {item!r}: {'.'.join(parts[:depth])} is not a mapping")


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))
