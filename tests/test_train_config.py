"""Training configs: every shipped YAML loads, mistakes fail with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from metasrgan.train.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
)
from metasrgan.train.runs import new_run_dir

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SAMPLES = [{"kind": "samples"}]


def minimal(**changes) -> dict:
    data = {
        "name": "t",
        "model": {"name": "meta-srgan", "args": {"features": 8, "blocks": 1}},
        "stages": [{"name": "a", "steps": 10, "data": [{"kind": "samples"}]}],
        "patch_size": 48,
    }
    data.update(changes)
    return data


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_round_trips(path):
    cfg = load_config(path)
    assert cfg.total_steps > 0
    # what the run folder's config.yaml holds (and --resume reads) gives the same config
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg)))) == cfg


def test_paper_config_has_the_papers_numbers():
    cfg = load_config(CONFIGS / "paper.yaml")
    assert (cfg.loss.l1, cfg.loss.adversarial, cfg.loss.perceptual) == (1.0, 0.001, 0.006)
    assert (cfg.optim.lr, cfg.optim.d_lr, cfg.optim.decay, cfg.optim.decay_every) == (
        1e-4, 1e-4, 0.8, 60_000,
    )  # fmt: skip
    assert cfg.batch_size == 8 and cfg.patch_size == 96 and cfg.warmup_l1_steps == 0
    assert [s.steps for s in cfg.stages] == [360_000, 360_000]
    assert cfg.model["args"]["blocks"] == 5 and cfg.discriminator["name"] == "discriminator"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"learning_rate": 1}, "config: unknown key(s) learning_rate"),
        ({"loss": {"l1": 1.0, "adverserial": 0.1}}, "loss: unknown key(s) adverserial"),
        ({"stages": [{"name": "a", "steps": 1, "data": SAMPLES, "lr": 1}]}, "stages[0]: unknown"),
        ({"batch_size": "eight"}, "batch_size: expected an integer, got 'eight'"),
        ({"batch_size": 8.5}, "batch_size: expected an integer"),
        ({"amp": "yes"}, "amp: expected true/false"),
        ({"optim": {"lr": "fast"}}, "optim.lr: expected a number"),
        ({"optim": {"betas": [0.9]}}, "optim.betas: expected a list of 2 values"),
        ({"scales": {"a": 1}}, "scales: expected a string or a number or a list"),
        ({"stages": [{"name": "a", "steps": "ten", "data": SAMPLES}]}, "stages[0].steps: expected"),
        ({"batch_size": 0}, "batch_size: must be positive, got 0"),
        ({"checkpoint_every": 0}, "checkpoint_every: must be positive"),
        ({"log_every": -1}, "log_every: must be positive"),
        ({"warmup_l1_steps": -5}, "warmup_l1_steps: must be >= 0"),
        ({"optim": {"decay": 1.5}}, "optim.decay: must be in (0, 1]"),
        ({"optim": {"ema": 1.0}}, "optim.ema: must be in [0, 1)"),
        ({"optim": {"betas": [0.9, 1.0]}}, "optim.betas: each must be in [0, 1)"),
        ({"loss": {"l1": -1.0}}, "loss.l1: must be >= 0"),
        ({"loss": {"noise_level": -1.0}}, "loss.noise_level: must be >= 0"),
        ({"optim": {"lr_scales": {"noise_estimator": 0}}}, "optim.lr_scales.noise_estimator: must"),
        ({"optim": {"lr_scales": {"noise_estimator": "x"}}}, "optim.lr_scales.noise_estimator"),
        ({"loss": {"l1": 0.0, "adversarial": 0.0, "perceptual": 0.0}}, "every loss weight is 0"),
        ({"discriminator": None}, "loss.adversarial: is 0.001 but discriminator is null"),
        ({"degradation": "nearest"}, "degradation: unknown degradation 'nearest'; presets:"),
        ({"scales": "1.1:4.0:0.1", "patch_size": 24}, "scales: scale 2.7 = 27/10 needs HR"),
        ({"scales": "4:1:1"}, "scales: scales: '4:1:1' needs STEP > 0 and STOP >= START"),
        ({"val_scales": [2.0, 0.5]}, "val_scales[1]: scale must be >= 1"),
        ({"model": {"name": "meta-sr"}}, "model.name: unknown model 'meta-sr'; available:"),
        ({"model": {"name": "edsr", "arg": {}}}, "model: a model is {name: ..., args:"),
        ({"device": "gpu"}, "device: expected auto, cpu, cuda"),
        ({"augment": {"gamma": [1.5, 0.5]}}, "augment.gamma: expected [low, high]"),
        ({"augment": {"zoom": [0.5, 2.0]}}, "augment.zoom: expected [low, high] with 1"),
        ({"augment": {"zoom": [1.0, 2.0], "zoom_p": 2}}, "augment.zoom_p: a probability"),
        ({"augment": {"contrast_p": -0.1}}, "augment.contrast_p: a probability"),
        (
            {
                "stages": [
                    {"name": "a", "steps": 1, "data": SAMPLES},
                    {"name": "a", "steps": 1, "data": SAMPLES},
                ]
            },
            "stages[1].name: 'a' must be unique",
        ),
        ({"stages": [{"name": "a/b", "steps": 1, "data": SAMPLES}]}, "stages[0].name: 'a/b'"),
        ({"stages": [{"name": "a", "steps": 1, "data": []}]}, "stages[0].data: no data sources"),
        ({"stages": []}, "stages: at least one stage is needed"),
        (
            {"stages": [{"name": "a", "steps": 1, "data": [{"kind": "div2k"}]}]},
            "stages[0].data[0].kind: 'div2k' is not one of",
        ),
        (
            {"stages": [{"name": "a", "steps": 1, "data": [{"kind": "brats", "rot": "x"}]}]},
            "stages[0].data[0]: unknown key(s) rot for kind brats; allowed:",
        ),
        ({"val_data": [{"kind": "samples", "nmes": []}]}, "val_data[0]: unknown key(s) nmes"),
        (
            {"stages": [{"name": "a", "steps": 1, "data": [{"kind": "natural", "repeat": 0}]}]},
            "stages[0].data[0]: repeat must be a whole number >= 1, got 0",
        ),
        (
            {"val_data": [{"kind": "natural", "val_fraction": [0.5]}]},
            "val_data[0]: float() argument must be",
        ),
        (
            {"stages": [{"name": "a", "steps": 1, "data": SAMPLES, "loss": {"perceptual": -1}}]},
            "stages[0].loss.perceptual: must be >= 0",
        ),
    ],
)
def test_bad_configs_fail_naming_the_key(changes, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(minimal(**changes))
    assert message in str(err.value)


@pytest.mark.parametrize("missing, message", [
    ("name", "name: required key is missing"),
    ("model", "model: required key is missing"),
    ("stages", "stages: required key is missing"),
])  # fmt: skip
def test_missing_keys_are_named(missing, message):
    data = minimal()
    del data[missing]
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)
    data = minimal(stages=[{"name": "a", "data": SAMPLES}])
    with pytest.raises(ConfigError, match=r"stages\[0\]\.steps: required key is missing"):
        config_from_dict(data)


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(minimal(bach_size=4)))
    with pytest.raises(ConfigError, match=r"typo\.yaml: config: unknown key\(s\) bach_size"):
        load_config(typo)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="name: required key is missing"):
        load_config(empty)


def test_exponent_floats_are_numbers_in_files_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"  # PyYAML alone (YAML 1.1) reads 5e-5 as the string '5e-5'
    path.write_text(yaml.safe_dump(minimal()) + "optim: {lr: 2e-4}\n")
    assert load_config(path).optim.lr == pytest.approx(2e-4)
    cfg = load_config(path, ["optim.lr=5e-5", "name=1e3x"])
    assert cfg.optim.lr == pytest.approx(5e-5) and cfg.name == "1e3x"


def test_set_overrides_reach_nested_keys_and_lists(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    cfg = load_config(
        path,
        [
            "stages.0.steps=3",
            "loss.perceptual=0",
            "optim.betas=[0.5, 0.9]",
            "scales=2",
            "model.args.features=4",
            "discriminator=null",
            "loss.adversarial=0",
        ],
    )
    assert cfg.stages[0].steps == 3 and cfg.loss.perceptual == 0.0
    assert cfg.optim.betas == (0.5, 0.9) and cfg.scales == 2.0
    assert cfg.model["args"]["features"] == 4 and cfg.discriminator is None
    for bad, message in [
        ("stages.0.steps", "is not KEY=VALUE"),
        ("stages.5.steps=1", "stages.5 is not an index"),
        ("name.first=1", "name is not a mapping"),
        ("stages.0.steps=zero", "stages[0].steps: expected an integer"),
        ("batchsize=1", "unknown key(s) batchsize"),
    ]:
        with pytest.raises(ConfigError) as err:
            load_config(path, [bad])
        assert message in str(err.value)


def test_run_folders_are_never_overwritten(tmp_path):
    first = new_run_dir(tmp_path, "exp")
    (first / "marker").write_text("keep")
    second = new_run_dir(tmp_path, "exp")
    third = new_run_dir(tmp_path, "exp")
    assert (first.name, second.name, third.name) == ("exp", "exp-2", "exp-3")
    assert (first / "marker").read_text() == "keep"


def test_lr_scales_give_named_parameters_their_own_learning_rate():
    from metasrgan.registry import make
    from metasrgan.train.config import ConfigError
    from metasrgan.train.stages import lr_groups

    args = {"features": 8, "blocks": 1, "skip": "sinc", "noise_input": True}
    spec = {"name": "meta-srgan", "args": {**args, "data_consistency": True}}
    model = make(spec)
    groups = lr_groups(model, 1e-4, {"noise_estimator": 20, "band_gate": 20})
    assert [g["lr"] for g in groups] == [1e-4, 2e-3]  # the base group first
    fast = {id(p) for p in groups[1]["params"]}
    named = dict(model.named_parameters())
    assert fast == {id(p) for n, p in named.items()
                    if n.startswith("noise_estimator.") or n == "band_gate"}  # fmt: skip
    assert sum(len(g["params"]) for g in groups) == len(named)
    assert len(lr_groups(model, 1e-4, {})) == 1
    with pytest.raises(ConfigError, match="no generator parameter is named noise_estimatr"):
        lr_groups(model, 1e-4, {"noise_estimatr": 20})
