"""The resumable state survives an interruption at any moment of its own writing."""

from __future__ import annotations

import json
import os

import pytest
import torch

from metasrgan.registry import make
from metasrgan.train.state import read_state, restore_models, restore_optimizers, save_state


def make_state(directory, step: int):
    torch.manual_seed(step)
    g = make({"name": "meta-srgan", "args": {"features": 4, "blocks": 1}})
    opt = torch.optim.Adam(g.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    g(torch.rand(1, 1, 6, 6), 2.0).mean().backward()
    opt.step()
    sched.step()
    save_state(directory, step=step, stage=0, generator=g, discriminator=None, opt_g=opt,
               opt_d=None, sched_g=sched, sched_d=None)  # fmt: skip
    return g, opt, sched


def test_state_round_trips_weights_optimizer_and_schedule(tmp_path):
    g, opt, sched = make_state(tmp_path / "state", 7)
    meta, tensors = read_state(tmp_path / "state")
    assert meta["step"] == 7
    g2 = make({"name": "meta-srgan", "args": {"features": 4, "blocks": 1}})
    opt2 = torch.optim.Adam(g2.parameters(), 1e-3)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, 2, 0.5)
    restore_models(tensors, g2, None)
    restore_optimizers(meta, tensors, opt2, None, sched2, None)
    assert all(
        torch.equal(a, b)
        for a, b in zip(g.state_dict().values(), g2.state_dict().values(), strict=True)
    )
    assert sched2.state_dict() == sched.state_dict()
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
    for i, entry in a["state"].items():
        assert all(torch.equal(v, b["state"][i][k]) for k, v in entry.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # no temporary folders left


def test_an_interrupted_swap_falls_back_to_the_previous_state(tmp_path):
    make_state(tmp_path / "state", 4)
    os.replace(tmp_path / "state", tmp_path / "state.old")  # killed between the two renames
    (tmp_path / "state.tmp").mkdir()  # and a half-written new state
    assert read_state(tmp_path / "state")[0]["step"] == 4
    make_state(tmp_path / "state", 6)  # the next checkpoint completes the swap
    assert read_state(tmp_path / "state")[0]["step"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_mismatched_state_files_are_refused(tmp_path):
    make_state(tmp_path / "state", 4)
    meta = json.loads((tmp_path / "state" / "state.json").read_text())
    meta["step"] = 5
    (tmp_path / "state" / "state.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="from step 4 but state.json from step 5"):
        read_state(tmp_path / "state")
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        read_state(tmp_path / "elsewhere")


def _restore_into(tensors, meta, features=4):
    g = make({"name": "meta-srgan", "args": {"features": features, "blocks": 1}})
    opt = torch.optim.Adam(g.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    restore_models(tensors, g, None)
    restore_optimizers(meta, tensors, opt, None, sched, None)


def test_a_damaged_state_is_refused_naming_the_file(tmp_path):
    from safetensors.torch import load_file

    from metasrgan.checkpoint import CheckpointError

    make_state(tmp_path / "state", 4)
    tensor_file = tmp_path / "state" / "state.safetensors"
    good = tensor_file.read_bytes()
    tensors = {k: v.clone() for k, v in load_file(str(tensor_file)).items()}
    torch.save(tensors, tensor_file)  # a pickle: refused, never loaded
    with pytest.raises(CheckpointError, match="state.safetensors: a PyTorch pickle"):
        read_state(tmp_path / "state")
    tensor_file.write_bytes(good[:-1000])
    with pytest.raises(CheckpointError, match="state.safetensors: .*truncated"):
        read_state(tmp_path / "state")
    tensor_file.write_bytes(good)
    json_file = tmp_path / "state" / "state.json"
    text = json_file.read_text()
    json_file.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="state.json: not valid JSON"):
        read_state(tmp_path / "state")
    json_file.write_text(text)
    meta, tensors = read_state(tmp_path / "state")
    _restore_into(tensors, meta)  # the intact state restores


def test_a_state_from_another_model_names_the_tensor_before_restoring(tmp_path):
    from metasrgan.checkpoint import CheckpointError

    make_state(tmp_path / "state", 4)
    meta, tensors = read_state(tmp_path / "state")
    with pytest.raises(CheckpointError, match=r"state.safetensors: tensor generator\..* has shape"):
        _restore_into(tensors, meta, features=6)
    broken = dict(tensors)
    moment = next(k for k in broken if k.startswith("opt_g.") and k.endswith("exp_avg"))
    broken[moment] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match=r"optimizer tensor .*exp_avg has shape \(3, 3\)"):
        _restore_into(type(tensors)(broken), meta)
    no_rng = {k: v for k, v in tensors.items() if k != "rng.torch"}
    with pytest.raises(CheckpointError, match="no valid rng.torch"):
        _restore_into(no_rng, meta)


def test_the_weight_average_follows_its_formula_and_refuses_another_models_tensors(tmp_path):
    from metasrgan.checkpoint import CheckpointError
    from metasrgan.train.average import WeightAverage

    torch.manual_seed(0)
    g = make({"name": "meta-srgan", "args": {"features": 4, "blocks": 1}})
    average = WeightAverage(g, 0.9)
    expected = None
    for _ in range(3):
        with torch.no_grad():
            for p in g.parameters():
                p.add_(torch.randn_like(p))
        average.update(g)
        now = {k: v.clone() for k, v in g.named_parameters()}
        # the first update copies the weights, each next one moves 10% of the way to them
        expected = now if expected is None else {k: 0.9 * expected[k] + 0.1 * now[k] for k in now}
    got = dict(average.model.named_parameters())
    assert all(torch.allclose(got[k], expected[k], atol=1e-6) for k in expected)

    restored = WeightAverage(
        make({"name": "meta-srgan", "args": {"features": 4, "blocks": 1}}), 0.9
    )
    assert restored.restore(average.state_tensors(), "state") is True
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            restored.model.state_dict().values(), average.model.state_dict().values(), strict=True
        )
    )
    assert restored.restore({"generator.x": torch.zeros(1)}, "state") is False  # none saved
    other = WeightAverage(make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1}}), 0.9)
    with pytest.raises(CheckpointError, match="state: .*ema"):
        other.restore(average.state_tensors(), "state")
