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


def test_specs_are_checked_against_the_constructor_before_building(tmp_path):
    from metasrgan.checkpoint import MAX_PARAMETERS, validate_spec

    # every argument the constructor takes is accepted, whatever it is called
    spec = {"name": "meta-srgan", "args": {"features": 8, "acquisitions": ["bicubic"]}}
    assert validate_spec(spec) == spec
    with pytest.raises(CheckpointError, match="has no argument 'widht'.*features"):
        validate_spec({"name": "meta-srgan", "args": {"widht": 8}})
    with pytest.raises(CheckpointError, match="blocks=True should be int"):
        validate_spec({"name": "srgan", "args": {"blocks": True}})
    with pytest.raises(CheckpointError, match="mean=nan is not finite"):
        validate_spec({"name": "srgan", "args": {"mean": float("nan")}})
    with pytest.raises(CheckpointError, match="widths has 100 entries"):
        validate_spec({"name": "discriminator", "args": {"widths": [8] * 100}})
    with pytest.raises(CheckpointError, match="bad arguments for model 'meta-srgan'"):
        validate_spec({"name": "meta-srgan", "args": {"skip": "sideways"}})
    with pytest.raises(CheckpointError, match=f"the limit is {MAX_PARAMETERS:,}"):
        validate_spec({"name": "edsr", "args": {"features": 1024, "blocks": 64}})


def test_a_saved_model_round_trips_through_every_check(tmp_path):
    model = make({"name": "srgan", "args": {"features": 8, "blocks": 2}})
    path = save_model(model, tmp_path / "s.safetensors")
    loaded = load_model(path)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
