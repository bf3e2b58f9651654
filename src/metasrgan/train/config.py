"""Training configuration: YAML files validated into dataclasses (no exec/eval).

Unknown keys and values of the wrong type are errors that name the offending key, so a typo
never silently trains with a default.  A config has shared settings and a list of stages
(the paper: 360k updates on natural images, then 360k on BraTS starting from those weights);
a stage may override the loss weights, the data and the augmentation.
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


def _check_spec(spec: Any, key: str) -> None:
    """A model spec is ``{name: ..., args: {...}}`` naming a registered model."""
    from metasrgan.registry import available

    if set(spec) - {"name", "args"} or not isinstance(spec.get("name"), str):
        raise ConfigError(f"{key}: a model is {{name: ..., args: {{...}}}}, got {spec!r}")
    if spec["name"] not in available():
        raise ConfigError(
            f"{key}.name: unknown model {spec['name']!r}; available: {', '.join(available())}"
        )
    if not isinstance(spec.get("args") or {}, dict):
        raise ConfigError(f"{key}.args: expected a mapping, got {spec['args']!r}")


def _check_sources(sources: list[dict[str, Any]], key: str) -> None:
    """Data source specs: a known ``kind`` and only its keys (the files are read later)."""
    from metasrgan.data.datasets import COMMON_KEYS, KIND_KEYS, KINDS

    for i, spec in enumerate(sources):
        where = f"{key}[{i}]"
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}")
        unknown = sorted(set(spec) - COMMON_KEYS - KIND_KEYS[kind])
        if unknown:
            allowed = ", ".join(sorted(COMMON_KEYS | KIND_KEYS[kind]))
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)} for kind {kind}; allowed: {allowed}"
            )


def _validate(cfg: TrainConfig) -> None:
    from metasrgan.data.patches import exact_patch_sizes
    from metasrgan.degradations import make_plan
    from metasrgan.scale import as_fraction, parse_scales

    def positive(value, key):
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")

    def not_negative(value, key):
        if value < 0:
            raise ConfigError(f"{key}: must be >= 0, got {value}")

    def check_loss(loss: LossConfig, key: str) -> None:
        for term in ("l1", "adversarial", "perceptual", "noise_level"):
            not_negative(getattr(loss, term), f"{key}.{term}")
        if loss.l1 == loss.adversarial == loss.perceptual == 0:
            raise ConfigError(f"{key}: every loss weight is 0; nothing would be trained")

    def check_augment(aug: AugmentConfig, key: str) -> None:
        for name in ("gamma", "gain"):
            span = getattr(aug, name)
            if span is not None and not 0 < span[0] <= span[1]:
                raise ConfigError(f"{key}.{name}: expected [low, high] with 0 < low <= high")
        if aug.zoom is not None and not 1 <= aug.zoom[0] <= aug.zoom[1] <= 4:
            raise ConfigError(f"{key}.zoom: expected [low, high] with 1 <= low <= high <= 4")
        for name in ("zoom_p", "contrast_p"):
            if not 0 <= (p := getattr(aug, name)) <= 1:
                raise ConfigError(f"{key}.{name}: a probability in [0, 1], got {p}")

    _check_spec(cfg.model, "model")
    if cfg.discriminator is not None:
        _check_spec(cfg.discriminator, "discriminator")
    for key in ("batch_size", "patch_size", "patches_per_image", "checkpoint_every", "log_every"):
        positive(getattr(cfg, key), key)
    for key in ("warmup_l1_steps", "validate_every", "sample_every", "threads", "workers"):
        not_negative(getattr(cfg, key), key)
    positive(cfg.val_images, "val_images")
    positive(cfg.optim.lr, "optim.lr")
    positive(cfg.optim.d_lr, "optim.d_lr")
    positive(cfg.optim.decay_every, "optim.decay_every")
    for prefix, factor in cfg.optim.lr_scales.items():
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor <= 0:
            raise ConfigError(f"optim.lr_scales.{prefix}: must be > 0, got {factor!r}")
    if not 0 <= cfg.optim.ema < 1:
        raise ConfigError(f"optim.ema: must be in [0, 1) (0 is off), got {cfg.optim.ema}")
    if not 0 < cfg.optim.decay <= 1:
        raise ConfigError(f"optim.decay: must be in (0, 1], got {cfg.optim.decay}")
    if not all(0 <= b < 1 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas: each must be in [0, 1), got {list(cfg.optim.betas)}")
    check_loss(cfg.loss, "loss")
    check_augment(cfg.augment, "augment")
    if not (cfg.device in ("auto", "cpu", "cuda", "mps") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"device: expected auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    if not cfg.stages:
        raise ConfigError("stages: at least one stage is needed")
    names = set()
    for i, stage in enumerate(cfg.stages):
        key = f"stages[{i}]"
        if not stage.name or any(c in stage.name for c in "/\\:") or stage.name in names:
            raise ConfigError(
                f"{key}.name: {stage.name!r} must be unique, non-empty and usable in a file name"
            )
        names.add(stage.name)
        positive(stage.steps, f"{key}.steps")
        if not stage.data:
            raise ConfigError(f"{key}.data: no data sources")
        _check_sources(stage.data, f"{key}.data")
        if stage.loss is not None:
            check_loss(stage.loss, f"{key}.loss")
        if stage.augment is not None:
            check_augment(stage.augment, f"{key}.augment")
        loss = cfg.stage_loss(stage)
        if loss.adversarial > 0 and cfg.discriminator is None:
            where = f"{key}.loss" if stage.loss is not None else "loss"
            raise ConfigError(
                f"{where}.adversarial: is {loss.adversarial} but discriminator is null"
            )
    try:
        scales = parse_scales(cfg.scales, as_float=True)
        if not scales:
            raise ValueError("no scales given")
        for s in scales:
            exact_patch_sizes(s, cfg.patch_size)
    except ValueError as err:
        raise ConfigError(f"scales: {err}") from None
    for where, deg in [("degradation", cfg.degradation)] + [
        (f"stages[{i}].degradation", st.degradation)
        for i, st in enumerate(cfg.stages)
        if st.degradation is not None
    ]:
        try:
            for option in make_plan(deg, scales).options:
                for s in option.scales:
                    exact_patch_sizes(s, cfg.patch_size)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
    try:
        val_chains(cfg)
    except ValueError as err:
        raise ConfigError(f"val_degradations: {err}") from None
    _check_sources(cfg.val_data, "val_data")
    for i, s in enumerate(cfg.val_scales):
        try:
            as_fraction(s)
        except ValueError as err:
            raise ConfigError(f"val_scales[{i}]: {err}") from None


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
    cfg = _build(TrainConfig, data, "")
    _validate(cfg)
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
