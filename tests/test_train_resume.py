"""Whole training runs, in-process: resume equality (with and without DataLoader workers), the
CLI on configs/quick.yaml, run folders.

The data are small crops of the bundled real MRI slabs, handed to the trainer by replacing
``metasrgan.train.loop.load_stage_images`` (the dataset loaders are tested on their own).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import metasrgan.train.loop as loop
from metasrgan.cli import main
from metasrgan.samples_path import sample_path
from metasrgan.train.step import gan_step

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def mri_crops(name: str, side: int, count: int = 3) -> list[np.ndarray]:
    """``count`` central ``side``-pixel crops of axial slices of a bundled slab, in [0, 1]."""
    volume = np.asarray(nib.load(sample_path(name)).dataobj, dtype=np.float32)
    volume /= np.percentile(volume, 99.5)
    h, w, depth = volume.shape
    top, left = (h - side) // 2, (w - side) // 2
    picks = np.linspace(0, depth - 1, count).round().astype(int)
    return [np.clip(volume[top : top + side, left : left + side, k], 0, 1).copy() for k in picks]


@pytest.fixture(autouse=True)
def _mri_data(monkeypatch):
    torch.set_num_threads(1)  # one thread: two spin-waiting ones are far slower on 2 shared cores
    train, val = mri_crops("mni152_train", 64), mri_crops("colin27_val", 64, 2)
    monkeypatch.setattr(
        loop, "load_stage_images", lambda sources, split: val if split == "val" else train
    )


def tiny_config(tmp_path: Path) -> Path:
    """Meta-SRGAN + discriminator, two stages, an L1 warm-up: every path a resume crosses."""
    cfg = {
        "name": "tiny",
        "model": {"name": "meta-srgan", "args": {"features": 8, "blocks": 1}},
        "discriminator": {"name": "discriminator", "args": {"widths": [8, 8, 16, 16]}},
        "loss": {"l1": 1.0, "adversarial": 0.01, "perceptual": 0.0},
        "optim": {"lr": 1e-3, "d_lr": 1e-3, "decay": 0.5, "decay_every": 3, "ema": 0.5},
        "batch_size": 2,
        "patch_size": 24,
        "patches_per_image": 2,
        "scales": [1.5, 2.0, 2.4, 3.0],
        "warmup_l1_steps": 1,
        "stages": [
            {"name": "first", "steps": 4, "data": [{"kind": "samples"}]},
            {
                "name": "second",
                "steps": 4,
                "data": [{"kind": "samples"}],
                "loss": {"l1": 1.0, "adversarial": 0.02, "perceptual": 0.0},
            },
        ],  # fmt: skip
        "val_data": [{"kind": "samples"}],
        "val_scales": [2.0],
        "checkpoint_every": 2,
        "validate_every": 4,
        "log_every": 1,
        "device": "cpu",
        "threads": 1,
        "workers": 2,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def crash_at_call(monkeypatch, n: int) -> None:
    """Interrupt the process at its ``n``-th update (1-based), like a killed job."""
    calls = {"n": 0}

    def crashing_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return gan_step(*args, **kwargs)

    monkeypatch.setattr(loop, "gan_step", crashing_step)


def saved_step(run: Path) -> int:
    return json.loads((run / "state" / "state.json").read_text())["step"]


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)
    runs = tmp_path / "runs"
    common = ["train", "--config", str(config), "--runs", str(runs), "--no-progress"]
    # batches made in the training process (workers=0) by the uninterrupted run, by two
    # DataLoader worker processes in the interrupted one: the batches of a step are the same
    assert main([*common, "--name", "straight", "--set", "workers=0"]) == 0

    # killed during updates 4, 6 and 8 (one update after a saved state, which the log has
    # seen): resumed from the states of step 2 (mid first stage, after the warm-up), step 4
    # (the stage boundary: the second stage's own optimizers) and step 6 (mid second
    # stage: optimizers and schedulers restored)
    crash_at_call(monkeypatch, 4)
    assert main([*common, "--name", "resumed"]) == 130
    resumed = runs / "resumed"
    for expected in (2, 4):
        assert saved_step(resumed) == expected
        crash_at_call(monkeypatch, 4)  # three updates after the saved state, then killed
        assert main(["train", "--resume", str(resumed), "--no-progress"]) == 130
    assert saved_step(resumed) == 6
    monkeypatch.setattr(loop, "gan_step", gan_step)
    stale = resumed / "slices" / "stage-1-123-456.npy"  # as a killed (SIGKILL) process leaves it
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"not slices")
    assert main(["train", "--resume", str(resumed), "--no-progress"]) == 0

    a, b = (
        load_file(str(runs / "straight/state/state.safetensors")),
        load_file(str(resumed / "state/state.safetensors")),
    )
    assert a.keys() == b.keys()
    assert any(k.startswith("discriminator.") for k in a)
    assert any(k.startswith("opt_d.") for k in a)
    assert any(k.startswith("ema.") for k in a)  # the weight average resumes too
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"the resumed run differs in {different[:5]}"
    meta = json.loads((resumed / "state" / "state.json").read_text())
    assert meta["step"] == 8 and meta["stage"] == 1
    assert meta["sched_g"]["last_epoch"] == 4  # the second stage's own schedule

    # the log keeps one line per step (the interrupted processes' extra lines are dropped)
    # and the same losses as the uninterrupted run
    def losses(run):
        lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        return [
            {k: v for k, v in x.items() if k != "train/steps_per_s"}
            for x in lines
            if "train/l_g_pix" in x
        ]

    assert [x["step"] for x in losses(resumed)] == list(range(1, 9))
    assert losses(resumed) == losses(runs / "straight")
    g_a = load_file(str(runs / "straight/checkpoints/last.safetensors"))
    g_b = load_file(str(resumed / "checkpoints/last.safetensors"))
    assert all(torch.equal(g_a[k], g_b[k]) for k in g_a)
    # the saved model is the weight average, not the last update's weights
    assert all(torch.equal(g_a[k], a[f"ema.module.{k}"]) for k in g_a)
    assert not all(torch.equal(g_a[k], a[f"generator.{k}"]) for k in g_a)
    # the stage's shared slice file is removed when a stage ends or is interrupted, and a file
    # left by a killed process is never read (each process group names its own) but cleared
    assert not (resumed / "slices").exists()


def test_ranks_wait_for_the_slice_file_or_rank_0s_error(tmp_path):
    from metasrgan.train.runs import Dist, agree, wait_for_file

    assert agree(Dist(), "rank 0's value") == "rank 0's value"
    ready, failed = tmp_path / "stage-0-x.npy", tmp_path / "stage-0-x.failed"
    ready.write_bytes(b"")
    wait_for_file(ready, failed)  # returns at once
    failed.write_text("ImageReadError: BraTS/sub-1/t1ce.nii.gz: truncated data")
    with pytest.raises(RuntimeError, match="rank 0 could not prepare .*truncated data"):
        wait_for_file(tmp_path / "stage-1-x.npy", failed)


def test_cli_trains_quick_yaml_into_a_loadable_model_with_logs(tmp_path, capsys, monkeypatch):
    from metasrgan.checkpoint import load_model

    runs = tmp_path / "runs"
    args = [
        "train", "--config", str(CONFIGS / "quick.yaml"), "--runs", str(runs), "--no-progress",
        "--set", "stages.0.steps=3", "--set", "warmup_l1_steps=1", "--set", "checkpoint_every=2",
        "--set", "validate_every=3", "--set", "log_every=1", "--set", "threads=1",
        "--set", "val_images=2", "--set", "device=cpu",
    ]  # fmt: skip
    assert main(args) == 0
    run = runs / "quick"
    model = load_model(run / "checkpoints" / "last.safetensors")
    assert model.spec["name"] == "meta-srgan" and model.metadata["step"] == 3
    lr = torch.rand(1, 1, 10, 10)
    assert model(lr, 2.5).shape == (1, 1, 25, 25)
    for name in ("best", "stage-mri"):
        assert (run / "checkpoints" / f"{name}.safetensors").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    train = [x for x in lines if "train/l_g_pix" in x]
    assert [x["step"] for x in train] == [1, 2, 3]
    assert "train/l_g_gan" not in train[0] and "train/l_d_real" in train[1]  # L1 warm-up first
    val = [x for x in lines if "val/psnr_x2" in x]
    assert val and {"val/psnr_classical_x3", "val/ssim_x3", "val/psnr_gain_mean"} <= set(val[0])
    assert yaml.safe_load((run / "config.yaml").read_text())["stages"][0]["steps"] == 3

    # the same command again never touches the first run; --init-from starts from its weights
    before = (run / "checkpoints" / "last.safetensors").read_bytes()
    init = ["--init-from", str(run / "checkpoints" / "last.safetensors")]
    assert main([*args[:-2], "--set", "stages.0.steps=1", "--set", "validate_every=0", *init]) == 0
    assert (runs / "quick-2" / "checkpoints" / "last.safetensors").is_file()
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == before
    capsys.readouterr()

    # mistakes are reported by the CLI as one clear line
    assert main(["train", "--config", str(CONFIGS / "quick.yaml"), "--set", "batch_sise=2"]) == 2
    assert "unknown key(s) batch_sise" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), *init]) == 2
    assert "exclude each other" in capsys.readouterr().err
    quick = ["train", "--config", str(CONFIGS / "quick.yaml"), "--runs", str(runs)]
    assert main([*quick, "--vgg19", str(tmp_path / "nope.pth")]) == 2
    assert "VGG19 weights file not found" in capsys.readouterr().err
    monkeypatch.delenv("METASRGAN_VGG19", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert main([*quick, "--set", "loss.perceptual=0.006"]) == 2
    assert "needs torchvision's ImageNet VGG19 weights" in capsys.readouterr().err
    assert sorted(p.name for p in runs.iterdir()) == ["quick", "quick-2"]  # none left empty


def test_fixed_scale_models_refuse_other_scales_before_training(tmp_path):
    from metasrgan.train.config import load_config

    cfg = load_config(
        CONFIGS / "srgan-x2.yaml",
        ["model.args.features=8", "model.args.blocks=1", "loss.perceptual=0", "scales=3"],
    )
    with pytest.raises(ValueError, match=r"only upscales by x2, but .* ask for \[3.0\]"):
        loop.Trainer(cfg, tmp_path, progress=False)
