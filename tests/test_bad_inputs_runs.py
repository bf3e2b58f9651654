"""Training runs and prepared datasets: a failure or interruption leaves nothing half-made,
and a bad ``--init-from`` / ``--resume`` file is named in one clear line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import metasrgan.train.loop as loop
from metasrgan.cli import main
from metasrgan.samples_path import sample_path
from metasrgan.train.step import gan_step

TINY_MODEL = {"name": "meta-srgan", "args": {"features": 4, "blocks": 1, "norm": "none"}}


@pytest.fixture(autouse=True)
def _mri_data(monkeypatch):
    """Three 48-pixel crops of a real slab instead of the stage's data sources."""
    volume = np.asarray(nib.load(sample_path("mni152_val")).dataobj, dtype=np.float32)
    volume /= volume.max()
    crops = [volume[40:88, 50:98, k].copy() for k in (2, 5, 8)]
    monkeypatch.setattr(loop, "load_stage_images", lambda sources, split: crops)
    torch.set_num_threads(1)


def config(tmp_path: Path, model=TINY_MODEL, steps: int = 4) -> Path:
    cfg = {
        "name": "tiny", "model": model, "discriminator": None,
        "loss": {"l1": 1.0, "adversarial": 0.0, "perceptual": 0.0},
        "batch_size": 2, "patch_size": 24, "patches_per_image": 1, "scales": [2.0],
        "stages": [{"name": "only", "steps": steps, "data": [{"kind": "samples"}]}],
        "val_data": [{"kind": "samples"}], "val_scales": [2.0], "val_images": 1,
        "checkpoint_every": 2, "validate_every": 0, "log_every": 1, "device": "cpu",
        "threads": 1,
    }  # fmt: skip
    path = tmp_path / f"tiny-{model['args']['features']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def interrupt_at_update(monkeypatch, n: int, error: type[BaseException] = KeyboardInterrupt):
    calls = {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise error("stopped by the test")
        return gan_step(*args, **kwargs)

    monkeypatch.setattr(loop, "gan_step", step)


def tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def train(tmp_path, *extra) -> int:
    args = ["train", "--runs", str(tmp_path / "runs"), "--no-progress", *extra]
    return main(args)


def test_a_pickled_init_from_is_refused_and_the_new_run_folder_removed(tmp_path, capsys):
    pickled = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, pickled)
    assert train(tmp_path, "--config", str(config(tmp_path)), "--init-from", str(pickled)) == 2
    err = capsys.readouterr().err
    assert "weights.pt: a PyTorch pickle" in err and "never unpickles" in err
    assert list((tmp_path / "runs").iterdir()) == []


def test_init_from_a_model_of_another_size_names_the_file_and_tensor(tmp_path, capsys):
    assert train(tmp_path, "--config", str(config(tmp_path)), "--name", "small") == 0
    small = tmp_path / "runs" / "small" / "checkpoints" / "last.safetensors"
    wider = config(
        tmp_path, {"name": "meta-srgan", "args": {"features": 6, "blocks": 1, "norm": "none"}}
    )
    capsys.readouterr()
    assert train(tmp_path, "--config", str(wider), "--init-from", str(small)) == 2
    err = capsys.readouterr().err
    assert f"{small}: tensor " in err and "has shape (4,) but the model needs (6,)" in err
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(small.read_bytes()[:-300])
    assert train(tmp_path, "--config", str(config(tmp_path)), "--init-from", str(cut)) == 2
    assert "cut.safetensors: not a readable safetensors file (truncated" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["small"]


def test_an_interrupted_run_without_a_checkpoint_leaves_no_folder(tmp_path, monkeypatch, capsys):
    interrupt_at_update(monkeypatch, 2)  # the first checkpoint comes after update 2
    assert train(tmp_path, "--config", str(config(tmp_path))) == 130
    assert "removed the unfinished run folder" in capsys.readouterr().err
    assert list((tmp_path / "runs").iterdir()) == []
    interrupt_at_update(monkeypatch, 1, FloatingPointError)  # a failure, not a Ctrl+C
    assert train(tmp_path, "--config", str(config(tmp_path))) == 2
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_run_with_a_checkpoint_is_kept_and_resumable(tmp_path, monkeypatch):
    interrupt_at_update(monkeypatch, 3)
    assert train(tmp_path, "--config", str(config(tmp_path))) == 130
    run = tmp_path / "runs" / "tiny"
    assert json.loads((run / "state" / "state.json").read_text())["step"] == 2
    monkeypatch.setattr(loop, "gan_step", gan_step)
    assert train(tmp_path, "--resume", str(run)) == 0
    assert json.loads((run / "state" / "state.json").read_text())["step"] == 4


def test_a_failed_resume_keeps_the_run_folder_untouched(tmp_path, capsys):
    assert train(tmp_path, "--config", str(config(tmp_path))) == 0
    run = tmp_path / "runs" / "tiny"
    state = run / "state" / "state.safetensors"
    tensors = {k: v.clone() for k, v in load_file(str(state)).items()}  # not mapped
    torch.save(tensors, state)  # a pickle where the state should be
    before = tree(run)
    capsys.readouterr()
    assert train(tmp_path, "--resume", str(run)) == 2
    err = capsys.readouterr().err
    assert f"{state}: a PyTorch pickle" in err
    assert tree(run) == before

    # a state whose generator is not the config's model: the tensor is named
    wider = {k: v for k, v in tensors.items()}
    name = next(k for k in wider if k.startswith("generator.") and k.endswith("weight"))
    wider[name] = torch.zeros(6, *wider[name].shape[1:])
    save_file(wider, str(state), metadata={"step": "4"})
    before = tree(run)
    assert train(tmp_path, "--resume", str(run)) == 2
    err = capsys.readouterr().err
    assert f"{state}: tensor {name} has shape (6, " in err
    assert tree(run) == before


# ---------------------------------------------------------------------------- data prepare


def test_data_prepare_refuses_outputs_it_would_damage(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    assert main(["data", "prepare", "samples", str(a_file)]) == 2
    assert "notes.txt: exists and is not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me too")
    assert main(["data", "prepare", "samples", str(other)]) == 2
    assert "holds other files" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["thesis.tex"]
    src = tmp_path / "scans"
    src.mkdir()
    nib.save(nib.load(sample_path("mni152_val")), str(src / "a.nii.gz"))
    assert main(["data", "prepare", str(src), str(src / "prepared")]) == 2
    assert "overlaps the source" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "other", "scans"]


def test_data_prepare_replaces_a_dataset_only_with_force_and_leaves_no_temp(tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(["data", "prepare", "samples", str(out), "--split", "val"]) == 0
    first = tree(out)
    assert main(["data", "prepare", "samples", str(out), "--split", "train"]) == 2
    assert "--force" in capsys.readouterr().err and tree(out) == first
    assert main(["data", "prepare", "samples", str(out), "--split", "train", "--force"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert {row["split"] for row in manifest["slices"]} == {"train"}
    assert not (out / "val").exists()  # the old dataset was replaced, not mixed in
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]


def test_a_bad_data_file_fails_the_run_with_exit_1_and_no_folder(tmp_path, monkeypatch, capsys):
    from metasrgan.data.io import ImageReadError

    def bad_data(sources, split):
        raise ImageReadError("BraTS/sub-1/t1ce.nii.gz: truncated data (on_error: skip skips it)")

    monkeypatch.setattr(loop, "load_stage_images", bad_data)
    assert train(tmp_path, "--config", str(config(tmp_path))) == 1
    assert "t1ce.nii.gz: truncated data" in capsys.readouterr().err
    assert list((tmp_path / "runs").iterdir()) == []
