"""The checks a training config passes before anything is read or built: each failure is
a :class:`~metasrgan.train.config.ConfigError` that names the key (the schema and YAML
reading are :mod:`metasrgan.train.config`)."""

from __future__ import annotations

from typing import Any

from metasrgan.data.patches import Augment as AugmentConfig
from metasrgan.train.config import ConfigError, LossConfig, TrainConfig, val_chains


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
    """Data source specs: a known ``kind``, only its keys and valid option values (the
    files are read later)."""
    from metasrgan.data.datasets import COMMON_KEYS, KIND_KEYS, KINDS, check_spec

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
        try:
            check_spec(spec)
        except (ValueError, TypeError) as err:  # TypeError: float() of a list, say
            raise ConfigError(f"{where}: {err}") from None


def validate(cfg: TrainConfig) -> None:
    """Raise :class:`ConfigError` naming the first key whose value cannot train."""
    _check_spec(cfg.model, "model")
    if cfg.discriminator is not None:
        _check_spec(cfg.discriminator, "discriminator")
    for key in ("batch_size", "patch_size", "patches_per_image", "checkpoint_every", "log_every"):
        _positive(getattr(cfg, key), key)
    for key in ("warmup_l1_steps", "validate_every", "sample_every", "threads", "workers"):
        _not_negative(getattr(cfg, key), key)
    _positive(cfg.val_images, "val_images")
    _positive(cfg.optim.lr, "optim.lr")
    _positive(cfg.optim.d_lr, "optim.d_lr")
    _positive(cfg.optim.decay_every, "optim.decay_every")
    for prefix, factor in cfg.optim.lr_scales.items():
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor <= 0:
            raise ConfigError(f"optim.lr_scales.{prefix}: must be > 0, got {factor!r}")
    if not 0 <= cfg.optim.ema < 1:
        raise ConfigError(f"optim.ema: must be in [0, 1) (0 is off), got {cfg.optim.ema}")
    if not 0 < cfg.optim.decay <= 1:
        raise ConfigError(f"optim.decay: must be in (0, 1], got {cfg.optim.decay}")
    if not all(0 <= b < 1 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas: each must be in [0, 1), got {list(cfg.optim.betas)}")
    _check_loss(cfg.loss, "loss")
    _check_augment(cfg.augment, "augment")
    if not (cfg.device in ("auto", "cpu", "cuda", "mps") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"device: expected auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    _check_stages(cfg)
    _check_scales(cfg)


def _check_stages(cfg: TrainConfig) -> None:
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
        _positive(stage.steps, f"{key}.steps")
        if not stage.data:
            raise ConfigError(f"{key}.data: no data sources")
        _check_sources(stage.data, f"{key}.data")
        if stage.loss is not None:
            _check_loss(stage.loss, f"{key}.loss")
        if stage.augment is not None:
            _check_augment(stage.augment, f"{key}.augment")
        loss = cfg.stage_loss(stage)
        if loss.adversarial > 0 and cfg.discriminator is None:
            where = f"{key}.loss" if stage.loss is not None else "loss"
            raise ConfigError(
                f"{where}.adversarial: is {loss.adversarial} but discriminator is null"
            )


def _check_scales(cfg: TrainConfig) -> None:
    """Training scales, each degradation's scales (exact patch sizes), validation's."""
    from metasrgan.data.patches import exact_patch_sizes
    from metasrgan.degradations import make_plan
    from metasrgan.scale import as_fraction, parse_scales

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


def _positive(value, key: str) -> None:
    if value <= 0:
        raise ConfigError(f"{key}: must be positive, got {value}")


def _not_negative(value, key: str) -> None:
    if value < 0:
        raise ConfigError(f"{key}: must be >= 0, got {value}")


def _check_loss(loss: LossConfig, key: str) -> None:
    for term in ("l1", "adversarial", "perceptual", "noise_level"):
        _not_negative(getattr(loss, term), f"{key}.{term}")
    if loss.l1 == loss.adversarial == loss.perceptual == 0:
        raise ConfigError(f"{key}: every loss weight is 0; nothing would be trained")


def _check_augment(aug: AugmentConfig, key: str) -> None:
    for name in ("gamma", "gain"):
        span = getattr(aug, name)
        if span is not None and not 0 < span[0] <= span[1]:
            raise ConfigError(f"{key}.{name}: expected [low, high] with 0 < low <= high")
    if aug.zoom is not None and not 1 <= aug.zoom[0] <= aug.zoom[1] <= 4:
        raise ConfigError(f"{key}.zoom: expected [low, high] with 1 <= low <= high <= 4")
    for name in ("zoom_p", "contrast_p"):
        if not 0 <= (p := getattr(aug, name)) <= 1:
            raise ConfigError(f"{key}.{name}: a probability in [0, 1], got {p}")
