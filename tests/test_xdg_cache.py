"""Caches follow the XDG base directory spec: ``$XDG_CACHE_HOME`` (absolute) is honoured."""

from __future__ import annotations

from pathlib import Path

from metasrgan.data.offline import data_dir


def test_metasrgan_data_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("METASRGAN_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "mine"


def test_xdg_cache_home_is_honoured(monkeypatch, tmp_path):
    monkeypatch.delenv("METASRGAN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "metasrgan"


def test_unset_or_relative_xdg_means_home_cache(monkeypatch):
    monkeypatch.delenv("METASRGAN_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert data_dir() == Path.home() / ".cache" / "metasrgan"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # invalid per the spec: ignored
    assert data_dir() == Path.home() / ".cache" / "metasrgan"


def test_the_loaders_and_fetch_look_there(monkeypatch, tmp_path):
    from metasrgan.commands.data import default_data_dir
    from metasrgan.data.offline import locate

    monkeypatch.delenv("METASRGAN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "metasrgan"
    (tmp_path / "metasrgan").mkdir()
    (tmp_path / "metasrgan" / "inia19-t1-brain.nii.gz").write_bytes(b"x")
    monkeypatch.setattr("metasrgan.data.offline.MRICRON_TEMPLATES", tmp_path / "none")
    assert locate("inia19") == tmp_path / "metasrgan" / "inia19-t1-brain.nii.gz"
