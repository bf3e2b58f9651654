"""``metasrgan data prepare / stats / fetch`` in-process, on fixtures in real layouts."""

from __future__ import annotations

import csv
import gzip
import json
import zipfile

import numpy as np
import pytest
from fixtures.mri_layouts import make_brats, make_div2k, real_volume, write_nifti

from metasrgan.cli import main
from metasrgan.data.datasets import load_dataset, load_slices
from metasrgan.data.offline import MNI152_MEMBER


@pytest.mark.parametrize("fmt", ["npy", "png"])
def test_prepare_writes_slices_and_a_manifest_that_loads_back(tmp_path, capsys, fmt):
    make_brats(tmp_path / "BraTS", "2019", subjects=5)
    out = tmp_path / "prepared"
    argv = ["data", "prepare", str(tmp_path / "BraTS"), str(out), "--crop", "16", "16"]
    assert main([*argv, "--format", fmt]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "brats"
    rows = manifest["slices"]
    assert {r["split"] for r in rows} == {"train", "val"}
    assert manifest["counts"]["train"]["files"] == 4 and manifest["counts"]["val"]["files"] == 1
    assert manifest["counts"]["train"]["skipped_background"] >= 16
    with open(out / "manifest.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["file"] for r in table] == [r["file"] for r in rows]
    assert all((out / r["file"]).is_file() and r["file"].endswith(fmt) for r in rows)
    direct = load_slices(
        {"kind": "brats", "root": str(tmp_path / "BraTS"), "crop": [16, 16]}, "train"
    )
    back = load_slices({"kind": "prepared", "root": str(out)}, "train")
    assert len(back) == len(direct)
    atol = 0 if fmt == "npy" else 1 / 65535
    np.testing.assert_allclose(back[3], direct[3], atol=atol)
    assert "wrote" in capsys.readouterr().out
    assert main([*argv, "--format", fmt]) == 2  # refuses to overwrite without --force
    assert "--force" in capsys.readouterr().err


def test_prepare_detects_a_div2k_folder_and_reports_bad_files(tmp_path, capsys):
    paths = make_div2k(tmp_path / "DIV2K", count=5)
    paths[2].write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    assert main(["data", "prepare", str(tmp_path / "DIV2K"), str(out), "--split", "all"]) == 1
    assert paths[2].name in capsys.readouterr().err
    argv = ["data", "prepare", str(tmp_path / "DIV2K"), str(out), "--split", "all"]
    assert main([*argv, "--on-error", "skip"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "images"
    assert len(manifest["slices"]) == 4
    assert [f["file"] for f in manifest["failed"]] == [str(paths[2])]


def test_stats_match_the_pixels_after_the_crop(tmp_path, capsys):
    make_brats(tmp_path, "2023", subjects=3)
    argv = ["data", "stats", str(tmp_path), "--crop", "12", "12", "--val-fraction", "0"]
    assert main([*argv, "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    images = load_dataset(
        {"kind": "brats", "root": str(tmp_path), "crop": [12, 12], "val_fraction": 0.0},
        "train",
    ).images
    pixels = np.concatenate([im.ravel() for im in images]).astype(np.float64)
    assert numbers["images"] == len(images) and numbers["pixels"] == pixels.size
    assert numbers["mean"] == pytest.approx(pixels.mean(), abs=1e-9)
    assert numbers["std"] == pytest.approx(pixels.std(), abs=1e-6)
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "after a 12x12 crop" in text and "0.370" in text


def test_stats_on_own_scans_and_unknown_sources(tmp_path, capsys):
    write_nifti(tmp_path / "scans" / "a.nii.gz", real_volume())
    assert main(["data", "stats", str(tmp_path / "scans"), "--split", "all"]) == 0
    assert "volumes [all]" in capsys.readouterr().out
    assert main(["data", "stats", "no-such-source"]) == 2
    assert "no-such-source" in capsys.readouterr().err


def _fake_wheel(path, member=MNI152_MEMBER, payload=b"nifti bytes"):
    """A wheel-shaped zip: dist-info plus the template at its real path."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("nilearn-0.0.0.dist-info/METADATA", "Name: nilearn\n")
        zf.writestr("nilearn/__init__.py", "")
        zf.writestr(member, payload)
    return path


def test_fetch_extracts_mni152_from_a_wheel_without_downloading(tmp_path, capsys, monkeypatch):
    import subprocess

    def no_download(*args, **kwargs):
        raise AssertionError("tests never download")

    monkeypatch.setattr(subprocess, "run", no_download)
    payload = gzip.compress(b"x" * 1000)
    wheel = _fake_wheel(tmp_path / "nilearn-0.0.0-py3-none-any.whl", payload=payload)
    dest = tmp_path / "cache"
    assert main(["data", "fetch", "--wheel", str(wheel), "--dest", str(dest)]) == 0
    out = dest / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    assert out.read_bytes() == payload
    assert not list(dest.glob("*.part"))
    assert f"MNI152: {out}" in capsys.readouterr().out
    empty = _fake_wheel(tmp_path / "other.whl", member="nilearn/other.txt")
    assert main(["data", "fetch", "--wheel", str(empty), "--dest", str(dest)]) == 2
    assert "does not contain" in capsys.readouterr().err
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    assert main(["data", "fetch", "--wheel", str(tmp_path / "bad.whl"), "--dest", str(dest)]) == 2
    assert "not a wheel" in capsys.readouterr().err


def test_a_manifest_cannot_point_outside_its_dataset(tmp_path):
    from metasrgan.data.manifest import read_manifest

    out = tmp_path / "prepared"
    assert main(["data", "prepare", "samples", str(out), "--split", "val"]) == 0
    doc = json.loads((out / "manifest.json").read_text())
    assert read_manifest(out)["slices"] == doc["slices"]
    for bad in ("../../etc/passwd", "/etc/passwd", "val/../../x.npy"):
        doc["slices"][1]["file"] = bad
        (out / "manifest.json").write_text(json.dumps(doc))
        with pytest.raises(ValueError, match="slice 2 points outside the dataset folder"):
            read_manifest(out)
    (out / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a metasrgan slice manifest"):
        read_manifest(out)
