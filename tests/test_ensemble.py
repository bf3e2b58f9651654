"""Self-ensemble (``--ensemble``): the mean of the turned copies' upscales, turned back; exact
for symmetric methods, better than one pass on an unseen real scan, recorded and checked."""

from __future__ import annotations

import json
from fractions import Fraction

import nibabel as nib
import numpy as np
import pytest
import torch
from fixtures.models import AWARE, with_random_weights

from metasrgan.api import Request, UsageError, upscale
from metasrgan.checkpoint import load_model, save_model
from metasrgan.cli import main
from metasrgan.ensemble import orientations
from metasrgan.evaluation.inputs import load_images
from metasrgan.evaluation.protocol import prepare
from metasrgan.inference import shipped_model_path, upscale_tensor
from metasrgan.metrics import psnr
from metasrgan.samples_path import sample_path


@pytest.fixture(scope="module")
def macaque_slices() -> torch.Tensor:
    """Two axial slices of the INIA19 macaque template (never trained on)."""
    images = load_images("inia19_macaque", max_images=5)[1:3]
    return torch.from_numpy(np.stack([im.array for im in images]))[:, None]


def test_eight_orientations_when_both_axes_get_one_factor_else_the_four_flips():
    assert len(orientations(2.5)) == 8
    assert len(set(orientations((Fraction(3), Fraction(3))))) == 8
    assert len(orientations((Fraction(3), Fraction(1)))) == 4
    assert not any(transpose for transpose, _ in orientations((2, 3)))


@pytest.mark.parametrize("scale, shape", [(2.5, None), ((3, 1), None), (2, (90, 66))])
def test_a_model_that_adds_nothing_to_its_symmetric_skip_is_its_own_ensemble(
    macaque_slices, scale, shape
):
    """A fresh model's residual is zero: its output is its skip (sinc), which no flip or
    transpose changes, so every turned copy must come back to the same pixels."""
    from metasrgan.registry import make

    model = make(AWARE).eval()
    x = macaque_slices[:, :, :45, :33]  # odd, non-square: a wrong turn back would show
    one = upscale_tensor(model, x, scale, shape, acquisition="kspace", noise=0.0)
    mean = upscale_tensor(model, x, scale, shape, acquisition="kspace", noise=0.0, ensemble=True)
    assert mean.shape == one.shape
    torch.testing.assert_close(mean, one, atol=1e-5, rtol=0)


def test_the_ensemble_is_the_mean_of_the_turned_copies_turned_back(macaque_slices):
    model = with_random_weights(AWARE, 3).eval()
    x = macaque_slices[:1, :, :40, :52]
    by_hand = []
    for transpose in (False, True):
        for flips in ((), (-1,), (-2,), (-2, -1)):
            t = x.transpose(-2, -1) if transpose else x
            t = t.flip(flips) if flips else t
            y = upscale_tensor(model, t.contiguous(), 2, acquisition="kspace")
            y = y.flip(flips) if flips else y
            by_hand.append(y.transpose(-2, -1) if transpose else y)
    mean = upscale_tensor(model, x, 2, acquisition="kspace", ensemble=True)
    torch.testing.assert_close(mean, torch.stack(by_hand).mean(0), atol=1e-6, rtol=0)
    assert not torch.allclose(by_hand[0], by_hand[5], atol=1e-3)  # the turns do differ


def test_the_shipped_model_as_an_ensemble_beats_one_pass_on_an_unseen_macaque(macaque_slices):
    """k-space truncation at x2.4 of two macaque slices: closer to the original, measured."""
    model = load_model(shipped_model_path()).eval()
    batch = prepare(macaque_slices, Fraction(12, 5), "kspace")
    shape = tuple(batch.hr.shape[-2:])
    one = upscale_tensor(model, batch.lr, batch.scale, shape, acquisition="kspace")
    mean = upscale_tensor(model, batch.lr, batch.scale, shape, acquisition="kspace", ensemble=True)
    hr = batch.hr[:, 0].numpy().astype(np.float64)
    for k in range(len(hr)):
        before, after = psnr(one[k, 0].numpy(), hr[k], 1.0), psnr(mean[k, 0].numpy(), hr[k], 1.0)
        assert after > before + 0.02, (k, before, after)


def test_ensemble_is_checked_and_recorded_in_the_sidecar(tmp_path, capsys):
    with pytest.raises(UsageError, match="--ensemble is on or off"):
        Request.of(scale=2, ensemble="yes")
    img = nib.load(sample_path("inia19_macaque"))
    data = img.get_fdata(dtype=np.float32)[:24, :20, :3]
    model = save_model(with_random_weights(AWARE, 1), tmp_path / "m.safetensors")
    plain, _ = upscale(data, scale=2, model=str(model), affine=img.affine)
    mean, _ = upscale(data, scale=2, model=str(model), affine=img.affine, ensemble=True)
    assert mean.shape == plain.shape == (48, 40, 3)
    assert not np.allclose(mean, plain)
    src, out = tmp_path / "lr.nii.gz", tmp_path / "sr.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine), src)
    assert main(["upscale", str(src), "--scale", "2", "-o", str(out), "--model", str(model),
                 "--ensemble", "--no-progress"]) == 0  # fmt: skip
    side = json.loads((tmp_path / "sr.json").read_text())
    assert side["SuperResolution"]["SelfEnsemble"] is True
    np.testing.assert_allclose(nib.load(out).get_fdata(), mean, rtol=0, atol=1e-4)
