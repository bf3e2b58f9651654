"""The bad-input corpus (scripts/make_bad_inputs.py): every file fails with a message that
names it and says what is wrong, through the library and the CLI, before any large
allocation, leaving no output, no temporary file and the input unchanged."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metasrgan.checkpoint import CheckpointError, load_model, load_weights
from metasrgan.cli import main
from metasrgan.data.io import ImageReadError, ImageTooLargeError, read_image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_bad_inputs.py"
_spec = importlib.util.spec_from_file_location("make_bad_inputs", SCRIPT)
corpus_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_module)
IMAGE_CASES = sorted(corpus_module.IMAGE_CASES)
MODEL_CASES = sorted(corpus_module.MODEL_CASES)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The corpus written by the script itself, as a user would run it."""
    folder = tmp_path_factory.mktemp("corpus")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(folder)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    expected = json.loads((folder / "expected.json").read_text())
    assert sorted(expected) == sorted(IMAGE_CASES + MODEL_CASES)
    return folder, expected


def _fingerprint(folder: Path) -> dict[str, str]:
    """Name -> content hash of every entry (FIFOs and folders by name only)."""
    prints = {}
    for p in sorted(folder.iterdir()):
        if p.is_file():
            prints[p.name] = hashlib.sha1(p.read_bytes()).hexdigest()
        else:
            prints[p.name] = "special"
    return prints


def test_the_corpus_is_small_on_disk(corpus):
    folder, _ = corpus
    sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    assert sum(sizes.values()) < 2_000_000
    assert 400_000 < sizes["bomb.nii.gz"] < 700_000  # inflates to 512 MiB
    assert sizes["huge.png"] < 200  # a 20000x20000 header


@pytest.mark.parametrize("name", IMAGE_CASES)
def test_each_bad_image_fails_clearly_without_side_effects(corpus, name):
    folder, expected = corpus
    before = _fingerprint(folder)
    with pytest.raises(ImageReadError) as info:
        read_image(folder / name)
    message = str(info.value)
    assert name in message and re.search(expected[name], message), message
    assert "\n" not in message and len(message) < 400
    assert _fingerprint(folder) == before  # input unchanged, nothing written beside it


@pytest.mark.parametrize("name", MODEL_CASES)
def test_each_bad_model_file_fails_clearly_without_side_effects(corpus, name):
    folder, expected = corpus
    before = _fingerprint(folder)
    with pytest.raises(CheckpointError) as info:
        load_model(folder / name)
    message = str(info.value)
    assert name in message and re.search(expected[name], message), message
    assert _fingerprint(folder) == before


def test_size_limits_are_checked_before_decoding(corpus, monkeypatch):
    """The bomb is refused from its header alone: the limit is configurable, and a lower
    limit refuses ordinary files with the numbers."""
    import tracemalloc

    folder, _ = corpus
    tracemalloc.start()
    for name in ("bomb.nii.gz", "huge.png", "huge.tif", "huge.jpg", "huge.npy", "huge.dcm"):
        with pytest.raises(ImageTooLargeError):
            read_image(folder / name)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20  # far from the 512 MiB the bomb inflates to
    good = folder / "four_d.nii.gz"  # 24x24x6x2 = 6912 voxels
    with pytest.raises(ImageTooLargeError, match=r"24x24x6x2 = 6,912 voxels.*limit is 1,000"):
        read_image(good, allow_4d=True, max_voxels=1000)
    monkeypatch.setenv("METASRGAN_MAX_VOXELS", "1000")
    with pytest.raises(ImageTooLargeError, match="limit is 1,000 voxels"):
        read_image(good, allow_4d=True)
    monkeypatch.setenv("METASRGAN_MAX_VOXELS", "7000")
    assert read_image(good, allow_4d=True).shape == (24, 24, 6, 2)
    monkeypatch.setenv("METASRGAN_MAX_VOXELS", "lots")
    with pytest.raises(ImageReadError, match="METASRGAN_MAX_VOXELS='lots'"):
        read_image(good, allow_4d=True)


def test_permission_denied_is_said(tmp_path, monkeypatch):
    import os
    import shutil

    from metasrgan.data.readers import common
    from metasrgan.samples_path import sample_path

    path = tmp_path / "locked.nii.gz"
    shutil.copy(sample_path("mni152_val"), path)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the check see what a user would
        monkeypatch.setattr(common.os, "access", lambda p, mode: Path(p) != path)
    with pytest.raises(ImageReadError, match="locked.nii.gz: permission denied"):
        read_image(path)


def test_wrong_tensors_name_the_file_for_init_from(corpus):
    from metasrgan.registry import make

    folder, expected = corpus
    model = make(corpus_module.SMALL_MODEL)
    for name in ("wrong_shape.safetensors", "missing_tensor.safetensors", "pickle.safetensors"):
        with pytest.raises(CheckpointError, match=expected[name]) as info:
            load_weights(model, folder / name)
        assert name in str(info.value)
    bigger = make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1, "norm": "none"}})
    with pytest.raises(CheckpointError, match="has shape .* but the model needs"):
        load_weights(bigger, folder / "nan_weights.safetensors")


def test_the_shipped_model_still_loads():
    import metasrgan
    from metasrgan.checkpoint import validate_spec

    model = load_model(Path(metasrgan.__file__).parent / "weights" / "metasrgan-mri.safetensors")
    assert model.spec["name"] == "meta-srgan"
    assert validate_spec(model.spec)["args"] == model.spec["args"]


# ---------------------------------------------------------------------------- via the CLI


@pytest.mark.parametrize(
    "name",
    ["bomb.nii.gz", "huge.png", "dim9.nii", "affine_singular.nii", "truncated.nii.gz",
     "fifo.nii.gz", "pixdim_nan.nii", "garbage.png"],
)  # fmt: skip
def test_data_prepare_reports_the_bad_file_and_writes_nothing(corpus, tmp_path, name, capsys):
    import os

    folder, expected = corpus
    src = tmp_path / "src"
    src.mkdir()
    if name == "fifo.nii.gz":
        os.mkfifo(src / name)
    else:
        (src / name).write_bytes((folder / name).read_bytes())
    before = _fingerprint(src)
    kind = "images" if name.endswith(".png") else "volumes"
    out = tmp_path / "out"
    assert main(["data", "prepare", str(src), str(out), "--kind", kind]) == 1
    err = capsys.readouterr().err
    assert name in err and re.search(expected[name], err), err
    assert "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    assert _fingerprint(src) == before


def test_info_on_bad_model_files_exits_2_with_the_message(corpus, capsys):
    folder, expected = corpus
    for name in ("pickle.safetensors", "huge_params.safetensors", "truncated.safetensors"):
        assert main(["info", "--model", str(folder / name)]) == 2
        err = capsys.readouterr().err
        assert name in err and re.search(expected[name], err), err


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_ctrl_c_while_reading_is_never_blamed_on_the_file(tmp_path, monkeypatch, wrapped):
    """KeyboardInterrupt passes through the readers, even when a library wrapped it."""
    import shutil

    import nibabel.dataobj_images
    from PIL import ImageFile

    from metasrgan.samples_path import sample_path

    def interrupted(*args, **kwargs):
        if not wrapped:
            raise KeyboardInterrupt
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise OSError("read failed") from err

    shutil.copy(sample_path("mni152_val"), tmp_path / "good.nii.gz")
    monkeypatch.setattr(nibabel.dataobj_images.DataobjImage, "get_fdata", interrupted)
    with pytest.raises(KeyboardInterrupt):
        read_image(tmp_path / "good.nii.gz")
    from PIL import Image

    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(tmp_path / "good.png")
    monkeypatch.setattr(ImageFile.ImageFile, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        read_image(tmp_path / "good.png")
