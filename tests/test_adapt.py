"""Adaptation to one scan (``--adapt``): better on an unseen real volume, the given model
untouched, repeatable, recorded in the output's provenance."""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from fixtures.models import AWARE, with_random_weights

from metasrgan.adapt import AUTO_STEPS, AdaptOptions, Task, adapt_model, adaptation
from metasrgan.api import Request, UsageError, load_model, upscale
from metasrgan.checkpoint import save_model
from metasrgan.cli import main
from metasrgan.degradations import fourier_resize
from metasrgan.samples_path import sample_path


@pytest.fixture(scope="module")
def macaque():
    """The bundled INIA19 slab (never trained on) and its axial slices' k-space at x2."""
    torch.set_num_threads(2)
    img = nib.load(sample_path("inia19_macaque"))
    hr = img.get_fdata(dtype=np.float32)[:130, :162]  # even in-plane sizes
    slices = torch.from_numpy(np.moveaxis(hr, 2, 0)).double()
    lr = fourier_resize(slices, (65, 81), "periodic").float().numpy()
    return hr, np.ascontiguousarray(np.moveaxis(lr, 0, 2)), img.affine


def psnr_in_anatomy(out: np.ndarray, ref: np.ndarray) -> float:
    top = float(np.percentile(ref[ref > 0], 99.5))
    a, b = np.clip(out / top, 0, 1), np.clip(ref / top, 0, 1)
    mask = b > 0.05
    return float(10 * np.log10(1 / np.mean((a - b)[mask] ** 2)))


def test_by_default_a_clean_unseen_macaque_is_adapted_to_and_gains_on_it(macaque, monkeypatch):
    """``--adapt auto``, the default: clean in-plane k-space is adapted to (AUTO_STEPS
    updates; 60 here, to keep the test short)."""
    monkeypatch.setattr("metasrgan.adapt.AUTO_STEPS", 60)
    hr, lr, affine = macaque
    model = load_model(None, device="cpu")
    plain, _ = upscale(lr, scale=2, model=model, affine=affine, acquisition="kspace", adapt=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto is quiet
        adapted, _ = upscale(lr, scale=2, model=model, affine=affine)
    before, after = psnr_in_anatomy(plain, hr), psnr_in_anatomy(adapted, hr)
    assert after > before + 0.5, (before, after)  # measured: 30.88 -> 32.01 dB (200: 32.17)


def test_a_noisy_scan_is_not_adapted_to_and_the_warning_says_why(macaque):
    """Its pairs' targets carry its noise: adapting would learn to keep it (NOISE_LIMIT)."""
    _, lr, affine = macaque
    model = load_model(None, device="cpu")
    rng = np.random.default_rng(0)
    sigma = 0.03 * float(np.percentile(lr, 99.5))
    noisy = np.hypot(lr + rng.normal(0, sigma, lr.shape), rng.normal(0, sigma, lr.shape))
    noisy = noisy.astype(np.float32)
    plain, _ = upscale(noisy, scale=2, model=model, affine=affine, acquisition="kspace", adapt=0)
    with pytest.warns(UserWarning, match=r"noise level is about [23]\.\d% .*used as it is"):
        tried, _ = upscale(noisy, scale=2, model=model, affine=affine, acquisition="kspace",
                           adapt=60)  # fmt: skip
    np.testing.assert_array_equal(tried, plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default (auto) skips it without a word
        default, _ = upscale(noisy, scale=2, model=model, affine=affine)
    np.testing.assert_array_equal(default, plain)


def test_the_given_model_is_untouched_and_a_run_repeats_exactly(macaque, monkeypatch):
    _, lr, _ = macaque
    monkeypatch.setattr("metasrgan.adapt.NOISE_LIMIT", 1.0)  # random weights: a random estimate
    model = with_random_weights(AWARE, 0).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    unit = np.clip(np.moveaxis(lr, 2, 0) / lr.max(), 0, 1)
    tasks = [Task((2, 2), "kspace", "kspace"), Task((3, 1), "thick", "thick")]
    options = AdaptOptions(steps=4, batch=2, patch=30)
    a, b = (adapt_model(model, unit, tasks, options) for _ in range(2))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for adapted in (a, b):
        assert adapted is not model and not adapted.training
        assert not any(p.requires_grad for p in adapted.parameters())
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in before)
    # 2D images hold no slice out: their adapted weights are the last update's
    single = adapt_model(model, unit[:1], tasks[:1], options)
    assert any(not torch.equal(before[k], v) for k, v in single.state_dict().items())


def test_adapt_is_checked_and_recorded_in_the_sidecar(tmp_path, macaque, capsys, monkeypatch):
    _, lr, affine = macaque
    monkeypatch.setattr("metasrgan.adapt.NOISE_LIMIT", 1.0)  # random weights: a random estimate
    with pytest.raises(UsageError, match="--adapt must be between 0 and"):
        Request.of(scale=2, adapt=-1)
    model = save_model(with_random_weights(AWARE, 1), tmp_path / "m.safetensors")
    src = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(lr[:32, :32, :6], affine), src)
    out = tmp_path / "sr.nii.gz"
    assert main(["upscale", str(src), "--scale", "2", "-o", str(out), "--model", str(model),
                 "--adapt", "3", "--no-progress"]) == 0  # fmt: skip
    side = json.loads((tmp_path / "sr.json").read_text())
    assert side["SuperResolution"]["AdaptationUpdates"] == 3
    assert nib.load(out).shape == (64, 64, 6)
    assert main(["upscale", str(src), "--scale", "2", "-o", str(tmp_path / "x.nii.gz"),
                 "--adapt", "-2", "--no-progress"]) == 2  # fmt: skip
    assert "--adapt" in capsys.readouterr().err
    assert Request.of(scale=2).adapt == Request.of(scale=2, adapt=" AUTO").adapt == "auto"
    assert Request.of(scale=2, adapt="200").adapt == 200
    with pytest.raises(UsageError, match="'auto' or a number of updates"):
        Request.of(scale=2, adapt="lots")


def test_auto_adapts_in_plane_kspace_passes_only_and_the_sidecar_says_when(
    tmp_path, macaque, monkeypatch
):
    """Thick slices and resized images gain more than 1 dB without adaptation; k-space needs
    it (AUTO_STEPS).  The sidecar records the updates actually made, none when skipped."""
    from metasrgan.registry import make

    _, lr, affine = macaque
    passes, aware = [((2, 2), False), ((3, 1), True)], make(AWARE)
    options, kept = adaptation("auto", passes, aware, "kspace")
    assert [t.degradation for t in kept] == ["kspace"]
    assert options.steps == AUTO_STEPS and not options.warn
    assert adaptation("auto", passes, aware, "bicubic")[1] == []  # resized, thick: not
    options, kept = adaptation(7, passes, aware, "kspace")
    assert [t.degradation for t in kept] == ["kspace", "thick"]
    assert options.steps == 7 and options.warn
    monkeypatch.setattr("metasrgan.adapt.NOISE_LIMIT", 1.0)  # random weights: a random estimate
    monkeypatch.setattr("metasrgan.adapt.AUTO_STEPS", 2)
    model = save_model(with_random_weights(AWARE, 1), tmp_path / "m.safetensors")
    src = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(lr[:32, :32, :6], affine), src)
    updates = {}
    for acquisition in ("kspace", "bicubic"):
        out = tmp_path / f"{acquisition}.nii.gz"
        assert main(["upscale", str(src), "--scale", "2", "-o", str(out), "--model", str(model),
                     "--acquisition", acquisition, "--no-progress"]) == 0  # fmt: skip
        record = json.loads(out.with_suffix("").with_suffix(".json").read_text())
        updates[acquisition] = record["SuperResolution"].get("AdaptationUpdates")
    assert updates == {"kspace": 2, "bicubic": None}


def test_a_resampling_matrix_cached_at_inference_serves_autograd_later():
    from metasrgan.degradations.fourier import axis_matrix

    with torch.inference_mode():
        cached = axis_matrix(37, 23, "periodic", "none", torch.float32, torch.device("cpu"))
    assert not cached.is_inference()
    x = torch.rand(37, 5, requires_grad=True)
    (cached @ x).sum().backward()  # refused for inference tensors
    assert x.grad is not None


def test_in_plane_passes_beyond_x2_learn_from_x2_pairs_if_the_slices_fit_their_own_scale():
    from fractions import Fraction

    from metasrgan.adapt import _fits, tasks_for
    from metasrgan.registry import make

    model = make(AWARE)
    three, half, thick = tasks_for([((3, 3), False), ((1.5, 1.5), False), ((5, 1), True)],
                                   model, "kspace")  # fmt: skip
    assert (three.scale, three.target, three.degradation) == ((2, 2), (3, 3), "kspace")
    assert (half.scale, half.target) == ((Fraction(3, 2),) * 2, None)
    assert (thick.scale, thick.target, thick.degradation) == ((5, 1), None, "thick")
    resized = tasks_for([((3, 2.5), False)], model, "bicubic")[0]
    assert (resized.scale, resized.target, resized.degradation) == (
        (2, 2), (3, Fraction(5, 2)), "bicubic")  # fmt: skip
    assert _fits(three, (64, 64))
    x4 = tasks_for([((4, 4), False)], model, "kspace")[0]
    with pytest.warns(UserWarning, match="too small to adapt to 4x4"):
        assert not _fits(x4, (32, 24))  # x2 pairs would fit (16x12), the pass's x4 not (8x6)
