"""The training patch sampler: exact-integer patch sizes, one scale per batch, crops (never
resizes) of the real images, seeded and resumable, disjoint ranks."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
import torch

from metasrgan.data.datasets import load_slices
from metasrgan.data.patches import Augment, PatchSampler, exact_patch_sizes
from metasrgan.degradations import make_chain
from metasrgan.scale import TRAINED_SCALES, parse_scales


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return load_slices({"kind": "samples", "names": ["mni152_train"], "crop": [64, 72]}, "train")


@pytest.mark.parametrize("patch_size", [96, 48])
def test_exact_patch_sizes_for_every_trained_scale(patch_size):
    for scale in TRAINED_SCALES:
        hr, lr = exact_patch_sizes(scale, patch_size)
        assert Fraction(lr) * Fraction(str(scale)) == hr  # exact, no rounding anywhere
        assert 0 < hr <= patch_size
    assert exact_patch_sizes(2.0, 96) == (96, 48)  # the paper's x2: 48x48 LR
    assert exact_patch_sizes(2.3, 96) == (92, 40)
    with pytest.raises(ValueError, match="needs HR patches of at least 31"):
        exact_patch_sizes(3.1, 30)


def test_parse_scales():
    assert parse_scales("1.1:4.0:0.1", as_float=True) == TRAINED_SCALES
    assert parse_scales(2, as_float=True) == (2.0,)
    assert parse_scales([1.5, 2], as_float=True) == (1.5, 2.0)
    with pytest.raises(ValueError):
        parse_scales("4:1:0.1")


def _locate(patch: np.ndarray, images: list[np.ndarray]) -> bool:
    """True if ``patch`` is a crop of one of ``images`` under one of the 8 flips/rotations."""
    from numpy.lib.stride_tricks import sliding_window_view

    side = patch.shape[0]
    variants = [np.rot90(p, k) for p in (patch, patch[::-1]) for k in range(4)]
    for image in images:
        windows = sliding_window_view(image, (side, side))
        if any((windows == v).all(axis=(-2, -1)).any() for v in variants):
            return True
    return False


def test_batches_are_exact_crops_with_one_scale_and_matching_lr(images):
    sampler = PatchSampler(images, batch_size=4, patch_size=48, seed=3)
    seen = set()
    for step in range(6):
        batch = sampler.batch(step)
        scale = batch["scale"]
        seen.add(scale)
        assert scale in TRAINED_SCALES
        hr_side, lr_side = exact_patch_sizes(scale, 48)
        assert batch["hr"].shape == (4, 1, hr_side, hr_side)
        assert batch["lr"].shape == (4, 1, lr_side, lr_side)
        expected = make_chain("bicubic")(batch["hr"], (lr_side, lr_side))
        torch.testing.assert_close(batch["lr"], expected)
        assert float(batch["hr"].min()) >= 0 and float(batch["hr"].max()) <= 1
    assert len(seen) > 1
    first = sampler.batch(1)["hr"][1, 0].numpy()
    idx = sampler.image_indices(1)[1]
    assert _locate(first, [images[idx]])  # a crop (with flips/rotation), never resized


def test_zoomed_patches_are_coarser_matrices_of_larger_crops(images):
    """``zoom``: each HR patch is a crop twice its size truncated in k-space to the patch
    (mirrored borders), under some flip or rotation; in [0, 1]; the LR follows from it."""
    from numpy.lib.stride_tricks import sliding_window_view

    from metasrgan.degradations import fourier_resize

    sampler = PatchSampler(images, batch_size=3, patch_size=24, seed=5, scales=(2.0,),
                           augment=Augment(zoom=(2.0, 2.0), zoom_p=1.0))  # fmt: skip
    batch = sampler.batch(0)
    hr = batch["hr"]
    side = hr.shape[-1]
    assert float(hr.min()) >= 0 and float(hr.max()) <= 1
    for k, i in enumerate(sampler.image_indices(0)):
        crops = torch.from_numpy(sliding_window_view(images[i], (2 * side, 2 * side)).copy())
        coarse = fourier_resize(crops.flatten(0, 1), (side, side), "mirror").clamp(0, 1)
        patch = hr[k, 0]
        variants = [torch.rot90(p, r) for p in (patch, patch.flip(0)) for r in range(4)]
        best = min(float((coarse - v).abs().amax(dim=(-2, -1)).min()) for v in variants)
        assert best < 1e-5
        assert not _locate(patch.numpy(), [images[i]])  # not a plain crop any more


def test_contrast_curves_remap_each_patch_by_one_piecewise_linear_curve(images):
    """``contrast_p``: the same crops as without it, each through its own curve: background
    stays 0, values in [0, 1], equal intensities stay equal, linear on each of the
    ``CONTRAST_SEGMENTS`` segments, and some curves reverse the contrast (not monotone)."""
    from metasrgan.data.patches import CONTRAST_SEGMENTS

    def hr(augment):
        sampler = PatchSampler(images, batch_size=6, patch_size=24, seed=2, scales=(2.0,),
                               augment=augment)  # fmt: skip
        return sampler.batch(0)["hr"].double().numpy()

    plain = hr(Augment(False, False))
    remapped = hr(Augment(False, False, contrast_p=1.0))
    assert remapped.min() >= 0 and remapped.max() <= 1
    assert (remapped[plain == 0] == 0).all()
    reversed_somewhere = False
    for x, y in zip(plain.reshape(6, -1), remapped.reshape(6, -1), strict=True):
        assert not np.allclose(x, y)
        for segment in range(CONTRAST_SEGMENTS):
            inside = (x * CONTRAST_SEGMENTS >= segment) & (x * CONTRAST_SEGMENTS < segment + 1)
            if inside.sum() > 2:
                slope, offset = np.polyfit(x[inside], y[inside], 1)
                np.testing.assert_allclose(slope * x[inside] + offset, y[inside], atol=1e-6)
                reversed_somewhere |= slope < 0
    assert reversed_somewhere
    half = hr(Augment(False, False, contrast_p=0.5))
    kept = [np.array_equal(a, b) for a, b in zip(plain, half, strict=True)]
    assert 0 < sum(kept) < 6


def test_seeded_resumable_and_different_per_seed(images):
    a = PatchSampler(images, batch_size=2, patch_size=40, seed=0)
    b = PatchSampler(images, batch_size=2, patch_size=40, seed=0)
    c = PatchSampler(images, batch_size=2, patch_size=40, seed=1)
    for step in (0, 5, 117):  # b jumps straight to the step: nothing to replay
        x, y = a.batch(step), b.batch(step)
        assert x["scale"] == y["scale"]
        torch.testing.assert_close(x["hr"], y["hr"])
    assert any(
        a.batch(s)["scale"] != c.batch(s)["scale"]
        or not torch.equal(a.batch(s)["hr"], c.batch(s)["hr"])
        for s in range(3)
    )


def test_an_epoch_draws_each_image_patches_per_image_times(images):
    sampler = PatchSampler(images, batch_size=4, patch_size=40, patches_per_image=16)
    steps = sampler.epoch_length // 4
    drawn = [i for s in range(steps) for i in sampler.image_indices(s)]
    assert np.bincount(drawn, minlength=len(images)).tolist() == [16] * len(images)


def test_ranks_read_disjoint_positions(images):
    r0 = PatchSampler(images, batch_size=2, patch_size=40, rank=0, world_size=2)
    r1 = PatchSampler(images, batch_size=2, patch_size=40, rank=1, world_size=2)
    one = PatchSampler(images, batch_size=2, patch_size=40)
    merged = [i for s in range(5) for i in r0.image_indices(s) + r1.image_indices(s)]
    assert merged == [i for s in range(10) for i in one.image_indices(s)]


def test_every_scale_is_drawn(images):
    sampler = PatchSampler(images, batch_size=1, patch_size=40)
    g_scales = set()
    scales = sampler.plan.options[0].scales
    for step in range(400):
        g = torch.Generator().manual_seed((sampler.seed * 7_919 + step) * 4_099)
        g_scales.add(scales[int(torch.randint(len(scales), (1,), generator=g))])
    assert g_scales == set(TRAINED_SCALES)
    assert {sampler.batch(s)["scale"] for s in range(5)} <= g_scales


def test_kspace_degradation_small_images_and_errors(images):
    sampler = PatchSampler(images, batch_size=2, patch_size=40, degradation="kspace")
    batch = sampler.batch(0)
    _, lr_side = exact_patch_sizes(batch["scale"], 40)
    assert batch["lr"].shape[-1] == lr_side
    tiny = [np.random.default_rng(0).random((10, 12), dtype=np.float32)]
    padded = PatchSampler(
        tiny, batch_size=2, patch_size=20, scales=[2.0], augment=Augment(False, False)
    )
    hr = padded.batch(0)["hr"]
    assert hr.shape == (2, 1, 20, 20) and float(hr[:, :, 10:, :].abs().max()) == 0.0
    with pytest.raises(ValueError, match="no training images"):
        PatchSampler([])
    with pytest.raises(ValueError, match="not 2D"):
        PatchSampler([np.zeros((4, 4, 4), np.float32)])
    with pytest.raises(ValueError, match="at least"):
        PatchSampler(images, patch_size=20, scales=[3.1])


def test_ranks_share_the_scale_but_not_the_patches(images):
    """One scale per global mini-batch under DDP; rank 0 alone matches a single process."""
    single = PatchSampler(images, batch_size=2, patch_size=40)
    r0 = PatchSampler(images, batch_size=2, patch_size=40, rank=0, world_size=2)
    r1 = PatchSampler(images, batch_size=2, patch_size=40, rank=1, world_size=2)
    for step in range(6):
        a, b = r0.batch(step), r1.batch(step)
        assert a["scale"] == b["scale"] == single.batch(step)["scale"]
        assert not torch.equal(a["hr"], b["hr"])


def test_slice_store_maps_the_images_and_pickles_as_its_path(images, tmp_path):
    import pickle

    from metasrgan.data.store import SliceStore

    mixed = [images[0], images[1][:50, :30], np.float64(images[2])]  # any sizes and dtypes
    store = SliceStore.write(tmp_path / "slices" / "stage-0.npy", mixed)
    assert len(store) == 3 and [s.shape for s in store] == [m.shape for m in mixed]
    for a, b in zip(store, mixed, strict=True):
        assert a.dtype == np.float32 and not a.flags.writeable
        np.testing.assert_array_equal(a, np.float32(b))
    payload = pickle.dumps(store)
    assert len(payload) < 2_000  # the path and the index, never the pixels
    np.testing.assert_array_equal(pickle.loads(payload)[1], mixed[1])
    assert sorted(p.name for p in (tmp_path / "slices").iterdir()) == [
        "stage-0-index.npy",
        "stage-0.npy",
    ]
    store.remove()
    assert not list((tmp_path / "slices").iterdir())
    with pytest.raises(ValueError, match="no training images"):
        SliceStore.write(tmp_path / "empty.npy", [])
    with pytest.raises(ValueError, match="not 2D"):
        SliceStore.write(tmp_path / "bad.npy", [images[0], np.zeros((2, 2, 2))])


def test_a_repeated_source_is_drawn_more_often_and_stored_once(images, tmp_path, monkeypatch):
    """``repeat: N`` lists a source's slices N times in training (N times the patches per
    epoch), never in validation; the store writes each repeated slice once."""
    from metasrgan.data import datasets
    from metasrgan.data.store import SliceStore
    from metasrgan.train.stages import load_stage_images

    small, large = [images[0]], images[1:]
    by_kind = {"natural": small, "samples": large}
    monkeypatch.setattr(datasets, "load_slices", lambda spec, split: list(by_kind[spec["kind"]]))
    sources = [{"kind": "natural", "repeat": 3}, {"kind": "samples"}]
    train = load_stage_images(sources, "train")
    assert [id(a) for a in train] == [id(small[0])] * 3 + [id(a) for a in large]
    assert len(load_stage_images(sources, "val")) == 1 + len(large)
    store = SliceStore.write(tmp_path / "s.npy", train)
    assert len(store) == len(train)
    assert np.load(tmp_path / "s.npy", mmap_mode="r").size == sum(a.size for a in images)
    for a, b in zip(store, train, strict=True):
        np.testing.assert_array_equal(a, b)
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match="repeat must be a whole number"):
            datasets.check_spec({"kind": "natural", "repeat": bad})


def test_the_loader_gives_the_sampler_batches_in_order_with_any_workers(images, tmp_path):
    """Batches from a mapped store through 0 or 2 worker processes, from a resumed step, equal
    the sampler's batches from the images in memory: the exact-resume guarantee holds."""
    from metasrgan.data.patches import PatchBatches, batch_loader
    from metasrgan.data.store import SliceStore

    store = SliceStore.write(tmp_path / "s.npy", images)
    plan = {"mixture": [{"weight": 1, "preset": "kspace-noise"}, {"weight": 1, "preset": "thick"}]}
    kwargs = {"batch_size": 3, "patch_size": 40, "seed": 5, "degradation": plan}
    reference = PatchSampler(images, **kwargs)
    expected = [reference.batch(step) for step in range(7, 12)]
    before = torch.get_rng_state()
    for workers in (0, 2):
        loader = batch_loader(PatchSampler(store, **kwargs), 7, 12, workers=workers)
        got = list(loader)
        assert len(got) == len(expected) == 5
        for a, b in zip(got, expected, strict=True):
            assert a["scale"] == b["scale"] and a["acquisition"] == b["acquisition"]
            assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"])
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG (saved states) untouched

    class WhereMade(PatchSampler):
        def batch(self, step):
            return {**super().batch(step), "pid": os.getpid()}

    made = {b["pid"] for b in batch_loader(WhereMade(store, **kwargs), 0, 4, workers=2)}
    assert os.getpid() not in made  # crops and degradations run in the worker processes
    batches = PatchBatches(reference, 7, 12)
    assert len(batches) == 5 and torch.equal(batches[0]["hr"], expected[0]["hr"])
    with pytest.raises(IndexError):
        batches[5]
