"""Fused CPU convolutions (metasrgan.models.fused) compute what the unfused layers do, for a
bounded set of input shapes."""

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


@pytest.fixture(autouse=True)
def _fresh_budget(monkeypatch):
    """Earlier tests in the process may have spent the shape budget."""
    monkeypatch.setattr(fused, "_shapes", set())
    monkeypatch.setattr(fused, "_used", [0])


@pytest.fixture(scope="module")
def slices() -> torch.Tensor:
    """Two real axial slices of the bundled MNI152 slab, ``[2, 1, H, W]`` in [0, 1]."""
    slab = np.asarray(nib.load(sample_path("mni152_train")).dataobj, dtype=np.float32)
    return torch.from_numpy(np.moveaxis(slab[:, :, 3:5] / slab.max(), -1, 0)[:, None].copy())


def _both(monkeypatch, fn):
    """``fn()`` fused and unfused, and how many fused calls the first made."""
    calls = []
    conv_prelu = fused.conv_prelu
    monkeypatch.setattr(fused, "conv_prelu", lambda *a: calls.append(1) or conv_prelu(*a))
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
    assert n >= 6  # the head and five residual blocks
    assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_a_batch_with_per_image_conditions_falls_back_only_at_the_head(monkeypatch, slices):
    """Two slices give the noise-aware head two biases: the head runs unfused, the rest fused."""
    model = load(None)
    a, b, n = _both(monkeypatch, lambda: upscale_tensor(model, slices, 2.0, acquisition="kspace"))
    assert n >= 5
    assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_training_runs_unfused_and_gets_gradients(monkeypatch, slices):
    model = load(None).train()
    monkeypatch.setattr(fused, "conv_prelu", lambda *a: pytest.fail("fused under autograd"))
    out = model.extract_features(slices[:1, :, :48, :48])
    out.square().mean().backward()
    assert model.features.body[0].body[0].weight.grad is not None


def test_new_shapes_run_unfused_once_the_budget_is_spent(monkeypatch):
    """oneDNN keeps memory for every shape it ran fused: the first shapes get fusion, the
    rest run unfused (bounded memory over many sizes), shapes already fused stay fused."""
    conv, act = torch.nn.Conv2d(1, 64, 3, padding=1), torch.nn.PReLU()
    one_map = 64 * 100 * 100 * 4
    monkeypatch.setattr(fused, "SHAPE_BUDGET_BYTES", 2 * one_map)
    with torch.inference_mode():
        seen = [fused.usable(conv, act, torch.zeros(1, 1, 100, 100 + i)) for i in (0, 0, 1, 2)]
        assert seen == [True, True, False, False]  # 100x101 would overrun the budget
        assert fused.usable(conv, act, torch.zeros(1, 1, 100, 100))
        assert fused.usable(conv, act, torch.zeros(1, 1, 50, 50))  # a quarter map: room left
