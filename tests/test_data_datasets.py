"""Datasets on fixtures in the real BraTS / DIV2K / DICOM layouts, the offline slab rule,
scikit-image's natural images and the bundled samples."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fixtures.mri_layouts import (
    BRATS_LAYOUTS,
    make_brats,
    make_div2k,
    real_volume,
    write_dicom_series,
    write_nifti,
)

from metasrgan.data import offline
from metasrgan.data.datasets import (
    brats_subjects,
    load_dataset,
    load_slices,
    natural_image_folder,
    split_items,
)
from metasrgan.data.io import ImageReadError


def _check_unit_slices(images, shape=None):
    assert images
    for im in images:
        assert im.dtype == np.float32 and im.ndim == 2
        assert float(im.min()) >= 0.0 and float(im.max()) <= 1.0
        if shape:
            assert im.shape == shape


@pytest.mark.parametrize("release", sorted(BRATS_LAYOUTS))
def test_brats_every_release_layout(tmp_path, release):
    make_brats(tmp_path, release, subjects=5)
    subjects = brats_subjects(tmp_path, "t1ce")
    assert len(subjects) == 5  # t1/t2/flair/seg files beside them are not picked up
    spec = {"kind": "brats", "root": str(tmp_path), "modality": "t1ce", "val_fraction": 0.2}
    train = load_dataset(spec, "train")
    val = load_dataset(spec, "val")
    assert (train.files, val.files) == (4, 1)
    train_subjects = {Path(r.source).parent.name for r in train.records}
    val_subjects = {Path(r.source).parent.name for r in val.records}
    assert not train_subjects & val_subjects  # subject-level split
    assert train_subjects | val_subjects == set(subjects)
    _check_unit_slices(train.images, (24, 24))
    assert train.skipped_background >= 4 * 4  # the black first/last slices
    assert len(train.images) == 4 * 10 - train.skipped_background
    assert all(r.axis == 2 for r in train.records)
    assert load_slices(spec, "val")[0].tobytes() == val.images[0].tobytes()  # deterministic
    cropped = load_slices({**spec, "crop": [16, 12]}, "train")
    _check_unit_slices(cropped, (16, 12))


def test_brats_split_depends_on_the_seed_and_errors_are_clear(tmp_path):
    make_brats(tmp_path, "2021", subjects=6)
    names = sorted(brats_subjects(tmp_path))
    splits = {frozenset(split_items(names, 0.5, seed)) for seed in range(6)}
    assert len(splits) > 1 and all(len(s) == 3 for s in splits)
    with pytest.raises(FileNotFoundError, match="no BraTS dwi"):
        load_slices({"kind": "brats", "root": str(tmp_path), "modality": "dwi"}, "train")


def test_a_bad_file_stops_or_is_skipped_never_silently(tmp_path, caplog):
    paths = make_brats(tmp_path, "2020", subjects=3)
    paths[1].write_bytes(paths[1].read_bytes()[:300])  # truncated
    spec = {"kind": "brats", "root": str(tmp_path), "val_fraction": 0.0}
    with pytest.raises(ImageReadError, match=f"{paths[1].name}.*on_error: skip"):
        load_slices(spec, "train")
    result = load_dataset({**spec, "on_error": "skip"}, "train")
    assert result.files == 2 and [Path(p).name for p, _ in result.failed] == [paths[1].name]
    assert "1 unreadable files skipped" in result.summary()
    assert paths[1].name in caplog.text


def test_div2k_folder_luminance_split_and_lr_ignored(tmp_path):
    paths = make_div2k(tmp_path, count=6)
    spec = {"kind": "images", "root": str(tmp_path)}
    train = load_dataset(spec, "train")
    val = load_dataset(spec, "val")
    sources = [r.source for r in train.records + val.records]
    assert sorted(sources) == sorted(str(p) for p in paths)  # no LR copies, nothing twice
    assert len(val.images) == 1
    _check_unit_slices(train.images + val.images, (40, 48))
    from PIL import Image

    rgb = np.asarray(Image.open(val.records[0].source), dtype=np.float64)
    expected = (rgb @ [0.299, 0.587, 0.114]) / 255.0
    np.testing.assert_allclose(val.images[0], expected, atol=1e-5)


def test_a_folder_of_own_scans_nifti_and_dicom(tmp_path):
    write_nifti(tmp_path / "sub-01_T1w.nii.gz", real_volume(seed=1))
    write_dicom_series(tmp_path / "sub-02" / "dicom", real_volume(seed=2), slope=1.0, intercept=0)
    result = load_dataset({"kind": "volumes", "root": str(tmp_path)}, "all")
    assert result.files == 2
    _check_unit_slices(result.images, (24, 24))
    assert len(result.images) + result.skipped_background == 20


@pytest.fixture
def small_offline(tmp_path, monkeypatch):
    """Offline sources replaced by 20x20x130 real-MRI volumes (the real ones take a minute
    to read on two cores); the slab rule under test is the real one."""
    vol = real_volume((20, 20, 130)) + 1.0  # no black slices: every slice is counted
    path = write_nifti(tmp_path / "offline.nii.gz", vol)
    monkeypatch.setattr(offline, "locate", lambda name, search=None: path)
    return vol


def test_offline_train_never_sees_the_slab_or_its_guard(small_offline):
    z0, z1 = offline.excluded_z("mni152")
    assert (z0, z1) == (91, 111)
    spec = {"kind": "offline", "names": ["mni152"], "axes": [0, 1, 2]}
    train = load_dataset(spec, "train")
    axial = [r.index for r in train.records if r.axis == 2]
    assert sorted(axial) == list(range(0, 91)) + list(range(111, 130))
    # sagittal/coronal slices come from the sub-volumes above and below, never across
    other = [im.shape for im, r in zip(train.images, train.records, strict=True) if r.axis != 2]
    assert sorted(set(other)) == [(20, 19), (20, 91)]
    assert len(other) == 2 * 2 * 20
    val = load_dataset(spec, "val")
    slab = offline.HELD_OUT_SLABS["mni152_val"]
    assert [r.index for r in val.records] == list(range(slab.z0, slab.z1))
    assert all(r.axis == 2 for r in val.records)
    bet = load_dataset({"kind": "offline", "names": ["colin27-bet"]}, "train")
    z0, z1 = offline.excluded_z("colin27-bet")
    assert not [r for r in bet.records if z0 <= r.index < z1]
    with pytest.raises(ValueError, match="never trained on"):
        load_slices({"kind": "offline", "names": ["inia19"]}, "train")


def test_the_validation_subject_at_half_a_millimetre_skips_the_same_slab_of_the_head():
    """``colin27-05mm`` shares the 1 mm Colin27's world space: the 0.5 mm voxels it trains on
    lie wholly outside the world z extent of the held-out slab and its guard."""
    fine = nib.load(offline.locate("colin27-05mm"))
    coarse = nib.load(offline.locate("colin27"))
    z0, z1 = offline.excluded_z("colin27")
    f0, f1 = offline.excluded_z("colin27-05mm")

    def world_z(img, k):
        return float(img.affine[2, 2] * k + img.affine[2, 3])

    lo, hi = world_z(coarse, z0 - 0.5), world_z(coarse, z1 - 0.5)  # the slab's faces
    assert world_z(fine, f0 - 1 + 0.5) <= lo and world_z(fine, f1 - 0.5) >= hi  # f0 - 1: below
    assert world_z(fine, f0 - 0.5) <= lo + 0.5  # no more than one voxel spare below
    train = load_dataset({"kind": "offline", "names": ["colin27-05mm"], "axes": [2]}, "train")
    kept = sorted({r.index for r in train.records})
    assert kept and not [k for k in kept if f0 <= k < f1]
    assert min(k for k in kept if k >= f1) == f1 and max(k for k in kept if k < f0) == f0 - 1


def test_natural_images_from_the_scikit_image_wheel():
    names = sorted(p.name for p in natural_image_folder().iterdir() if p.suffix in (".png", ".jpg"))
    assert len(names) >= 10
    val_names = split_items(names, 0.2, 0)
    result = load_dataset({"kind": "natural"}, "val")
    assert sorted(Path(r.source).name for r in result.records) == sorted(val_names)
    _check_unit_slices(result.images)


def test_bundled_samples_axial_slices():
    result = load_dataset({"kind": "samples", "names": ["mni152_val", "colin27_val"]}, "val")
    assert len(result.images) + result.skipped_background == 24
    _check_unit_slices(result.images)
    shapes = {im.shape for im in result.images}
    assert shapes == {(149, 179), (181, 213)}


def test_samples_train_only_on_the_training_slab_far_from_the_held_out_ones():
    from metasrgan.samples_path import SAMPLES, TRAINING_SAMPLES, sample_path

    train = load_dataset({"kind": "samples"}, "train")
    assert {r.source for r in train.records} == set(TRAINING_SAMPLES) == {"mni152_train"}
    assert len(train.images) + train.skipped_background == 8
    _check_unit_slices(train.images, (153, 188))
    val = load_dataset({"kind": "samples"}, "val")
    assert not {r.source for r in val.records} & set(TRAINING_SAMPLES)
    assert {r.source for r in load_dataset({"kind": "samples"}, "all").records} == set(SAMPLES)
    for name in ("mni152_val", "colin27_val", "inia19_macaque"):
        with pytest.raises(ValueError, match=f"{name} are held out of training"):
            load_slices({"kind": "samples", "names": [name]}, "train")
    # the slab is the source volume's slices 60:68, outside every held-out slab and guard
    slab = offline.TRAINING_SLABS["mni152_train"]
    offline.check_trainable(slab)
    lo, hi = offline.excluded_z("mni152")
    assert slab.z1 <= lo or slab.z0 >= hi
    with pytest.raises(ValueError, match="overlap the held-out range"):
        offline.check_trainable(offline.Slab("mni152", 100, 104))
    source = np.asarray(nib.load(offline.locate("mni152")).dataobj)
    sample = nib.load(sample_path("mni152_train"))
    data = np.asarray(sample.dataobj)
    corner = np.linalg.solve(nib.load(offline.locate("mni152")).affine, sample.affine[:, 3])
    x0, y0, z0 = (int(round(v)) for v in corner[:3])
    assert z0 == slab.z0 and data.shape[2] == slab.z1 - slab.z0
    x1, y1 = x0 + data.shape[0], y0 + data.shape[1]
    np.testing.assert_array_equal(data, source[x0:x1, y0:y1, slab.z0 : slab.z1])
    assert sample_path("mni152_train").stat().st_size < 150_000


def test_no_config_trains_on_a_validation_sample():
    """Every stage's data sources of every shipped config: never a ``*_val`` sample or slab,
    and each one loads nothing held out for the training split (checked without reading)."""
    import yaml

    from metasrgan.data.datasets import sample_names
    from metasrgan.train.config import load_config

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(configs) >= 5
    checked = 0
    for path in configs:
        raw = yaml.safe_load(path.read_text())
        load_config(path)  # a valid config: its stages are what training reads
        for stage in raw["stages"]:
            for source in stage["data"]:
                names = source.get("names", [])
                assert not [n for n in names if str(n).endswith("_val")], (path.name, source)
                if source["kind"] == "samples":
                    sample_names(source, "train")  # raises for a held-out sample
                checked += 1
        if path.name == "quick.yaml":
            assert raw["stages"][0]["data"] == [{"kind": "samples", "names": ["mni152_train"]}]
            assert raw["val_data"][0]["names"][0].endswith("_val")
    assert checked >= len(configs)


def test_mostly_background_slices_are_skipped_and_counted(tmp_path):
    vol = np.zeros((20, 20, 4), np.float32)
    vol[:, :, 0] = real_volume((20, 20, 1))[..., 0] + 1  # full slice
    vol[:2, :2, 1] = 5.0  # 1% non-zero: background
    vol[:5, :5, 2] = 5.0  # 6.25%: kept
    write_nifti(tmp_path / "v.nii.gz", vol)
    result = load_dataset({"kind": "volumes", "root": str(tmp_path)}, "all")
    assert [r.index for r in result.records] == [0, 2]
    assert result.skipped_background == 2
    strict = load_dataset({"kind": "volumes", "root": str(tmp_path), "min_foreground": 0.5}, "all")
    assert [r.index for r in strict.records] == [0]


@pytest.mark.parametrize(
    "spec, split, message",
    [
        ({"kind": "hcp"}, "train", "kind 'hcp' is unknown"),
        ({"kind": "natural", "root": "x"}, "train", "unknown keys root"),
        ({"kind": "natural"}, "test", "split 'test'"),
        ({"kind": "natural", "on_error": "ignore"}, "train", "on_error"),
        ({"kind": "natural", "normalize": "zscore"}, "train", "normalize"),
        ({"kind": "images", "root": "/nonexistent"}, "train", "not a folder"),
        ({"kind": "natural", "crop": [96]}, "train", "crop must be"),
        ({"kind": "natural", "val_fraction": 1.5}, "train", "val_fraction"),
    ],
)
def test_spec_errors(spec, split, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_slices(spec, split)


def test_split_items_fraction_and_minimum():
    names = [f"case{i:03d}" for i in range(100)]
    assert len(split_items(names, 0.2)) == 20
    assert len(split_items(names[:2], 0.2)) == 1
    assert split_items(names, 0.0) == set()
    assert split_items(names, 0.2, seed=1) != split_items(names, 0.2, seed=0)


def test_normalizations(tmp_path):
    from metasrgan.data.datasets import normalize_volume
    from metasrgan.intensity import IntensityMap

    vol = real_volume() * 3.0 + 7.0
    fitted = IntensityMap.fit(vol)
    np.testing.assert_allclose(normalize_volume(vol, "percentile"), fitted.apply(vol))
    lo, hi = vol.min(), vol.max()
    np.testing.assert_allclose(normalize_volume(vol, "minmax"), (vol - lo) / (hi - lo), rtol=1e-6)
    np.testing.assert_allclose(normalize_volume(vol, "range", "uint16"), vol / 65535, rtol=1e-6)
    np.testing.assert_allclose(normalize_volume(vol, "range", "float32"), (vol - lo) / (hi - lo))
    with pytest.raises(ValueError, match="normalize: none needs values in"):
        normalize_volume(vol, "none")
    write_nifti(tmp_path / "v.nii.gz", vol)
    images = load_slices({"kind": "volumes", "root": str(tmp_path), "normalize": "minmax"}, "all")
    assert max(float(im.max()) for im in images) == pytest.approx(1.0)


def test_every_kind_has_one_loader_in_the_registry():
    from metasrgan.data.datasets import KIND_KEYS, KINDS
    from metasrgan.data.sources import SOURCES

    assert SOURCES.names() == sorted(KINDS) and set(KIND_KEYS) == set(KINDS)
