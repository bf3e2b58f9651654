"""Fused CPU convolutions (metasrgan.models.fused) compute what the unfused layers do."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from metasrgan.inference import load, upscale_tensor
from metasrgan.models import fused
from metasrgan.samples_path import sample_path

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this PyTorch has no oneDNN"
)


@pytest.fixture(scope="module")
def slices() -> torch.Tensor:
    """Two real axial slices of the bundled MNI152 slab, ``[2, 1, H, W]`` in [0, 1]."""
    slab = np.asarray(nib.load(sample_path("mni152_train")).dataobj, dtype=np.float32)
    return torch.from_numpy(np.moveaxis(slab[:, :, 3:5] / slab.max(), -1, 0)[:, None].copy())


def _both(monkeypatch, fn):
    """``fn()`` fused and unfused, and how many fused calls the first made."""
    calls = []
    conv_add = fused.conv_add
    monkeypatch.setattr(fused, "conv_add", lambda *a: calls.append(1) or conv_add(*a))
    with torch.inference_mode():
        a = fn()
        monkeypatch.setattr(fused, "ENABLED", False)
        n = len(calls)
        b = fn()
    assert len(calls) == n  # the unfused run made no fused call
    return a, b, n


@pytest.mark.parametrize(
    ("scale", "acquisition"),
    [(2.0, "kspace"), (3.7, "kspace"), ((4, 1), "thick"), (1.3, "bicubic")],
)
def test_the_shipped_model_gives_the_same_image_fused(monkeypatch, slices, scale, acquisition):
    model = load(None)
    x = slices[:1]
    a, b, n = _both(monkeypatch, lambda: upscale_tensor(model, x, scale, acquisition=acquisition))
    assert n >= 6  # five residual blocks and the trunk's end
    assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_a_batch_with_per_image_conditions_falls_back_only_at_the_head(monkeypatch, slices):
    """Two slices give the noise-aware head two biases: the head runs unfused, the rest fused."""
    model = load(None)
    a, b, n = _both(monkeypatch, lambda: upscale_tensor(model, slices, 2.0, acquisition="kspace"))
    assert n >= 6
    assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_training_runs_unfused_and_gets_gradients(monkeypatch, slices):
    model = load(None).train()
    monkeypatch.setattr(fused, "conv_add", lambda *a: pytest.fail("fused under autograd"))
    out = model.extract_features(slices[:1, :, :48, :48])
    out.square().mean().backward()
    assert model.features.body[0].body[0].weight.grad is not None
