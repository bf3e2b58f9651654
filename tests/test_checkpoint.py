import json

import pytest
import torch

from metasrgan.checkpoint import CheckpointError, load_model, read_metadata, save_model
from metasrgan.registry import make


def test_model_rebuilds_from_the_file_alone(tmp_path):
    model = make({"name": "meta-srgan", "args": {"norm": "none", "skip": "bicubic"}}).eval()
    path = save_model(model, tmp_path / "m.safetensors", extra={"config": {"steps": 3}})
    (tmp_path / "m.json").unlink()  # the header alone is enough
    loaded = load_model(path)
    assert loaded.spec == model.spec
    assert read_metadata(path)["config"] == {"steps": 3}
    x = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 2.2), model(x, 2.2))


def test_sidecar_json_is_written(tmp_path):
    save_model(make({"name": "srgan"}), tmp_path / "s.safetensors")
    meta = json.loads((tmp_path / "s.json").read_text())
    assert meta["model"]["name"] == "srgan"


def test_bad_files_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(bad)
    with pytest.raises(CheckpointError, match="end in .safetensors"):
        save_model(make({"name": "srgan"}), tmp_path / "x.pt")
