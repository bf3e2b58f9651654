"""One GAN update of each generator, the perceptual-loss plumbing, and missing VGG19 weights.

The perceptual term is tested with an **un-pretrained** VGG19 (random weights, truncated to
its first layers, or the full layout saved to a file): ImageNet weights cannot be downloaded
here, and these tests check the plumbing (shapes, gradients, loading by key), not the
features' quality.
"""

from __future__ import annotations

import pytest
import torch

from metasrgan.models.vgg import VGG19Features, VGG19WeightsMissing
from metasrgan.registry import make
from metasrgan.train.config import LossConfig
from metasrgan.train.step import gan_step

TINY_D = {"name": "discriminator", "args": {"widths": [8, 8, 16, 16]}}
GENERATORS = {
    "meta-srgan": ({"name": "meta-srgan", "args": {"features": 8, "blocks": 1}}, 2.5),
    "srgan": ({"name": "srgan", "args": {"features": 8, "blocks": 1}}, 2.0),
    "edsr": ({"name": "edsr", "args": {"features": 8, "blocks": 1, "scale": 2}}, 2.0),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: on a shared 2-core machine two spinning threads are many times slower."""
    torch.set_num_threads(1)


def batch_for(scale: float, lr_side: int = 8) -> dict:
    hr_side = round(lr_side * scale)
    hr = torch.rand(2, 1, hr_side, hr_side)
    lr = torch.nn.functional.interpolate(hr, size=(lr_side, lr_side), mode="area")
    return {"hr": hr, "lr": lr, "scale": scale}


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_one_gan_step_updates_generator_and_discriminator(name):
    spec, scale = GENERATORS[name]
    g, d = make(spec), make(TINY_D)
    vgg = VGG19Features(layers=4)  # un-pretrained, truncated: plumbing only
    opt_g = torch.optim.Adam(g.parameters(), 1e-3)
    opt_d = torch.optim.Adam(d.parameters(), 1e-3)
    g0, d0 = snapshot(g), snapshot(d)
    seen_by_d: list[bool] = []
    # the discriminator must be frozen while the generator's loss goes backward through it
    d.features[0].register_forward_hook(lambda m, i, o: seen_by_d.append(m.weight.requires_grad))
    logs = gan_step(batch_for(scale), g, d, opt_g, opt_d, LossConfig(perceptual=0.006), vgg)
    assert set(logs) == {"l_g_pix", "l_g_percep", "l_g_gan", "l_g_total", "l_d_real", "l_d_fake"}
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    expected = logs["l_g_pix"] + 0.006 * logs["l_g_percep"] + 0.001 * logs["l_g_gan"]
    assert logs["l_g_total"] == pytest.approx(expected, rel=1e-5)
    assert seen_by_d == [False, True, True]  # G pass frozen; D's real and fake passes not
    assert all(p.requires_grad for p in d.parameters())
    assert all(not torch.equal(g0[k], p) for k, p in g.named_parameters())
    assert any(not torch.equal(d0[k], p) for k, p in d.named_parameters())
    assert all(p.grad is None for p in vgg.parameters())


def test_gan_step_runs_under_autocast():
    """The GPU path (bfloat16 autocast) exercised on the CPU's autocast."""
    spec, scale = GENERATORS["meta-srgan"]
    g, d = make(spec), make(TINY_D)
    opt_g = torch.optim.Adam(g.parameters(), 1e-3)
    opt_d = torch.optim.Adam(d.parameters(), 1e-3)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    vgg = VGG19Features(layers=4)
    logs = gan_step(batch_for(scale), g, d, opt_g, opt_d, LossConfig(), vgg, autocast)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert all(p.dtype == torch.float32 for p in g.parameters())


def test_l1_only_step_leaves_the_discriminator_alone():
    spec, scale = GENERATORS["meta-srgan"]
    g, d = make(spec), make(TINY_D)
    d0 = snapshot(d)
    opt_g = torch.optim.Adam(g.parameters(), 1e-3)
    loss = LossConfig(adversarial=0.0, perceptual=0.0)
    logs = gan_step(batch_for(scale), g, d, opt_g, None, loss)
    assert set(logs) == {"l_g_pix", "l_g_total"}
    assert all(torch.equal(d0[k], p) for k, p in d.named_parameters())


def test_perceptual_without_vgg_is_a_clear_error():
    spec, scale = GENERATORS["meta-srgan"]
    g = make(spec)
    opt_g = torch.optim.Adam(g.parameters(), 1e-3)
    with pytest.raises(ValueError, match="perceptual loss is on but no VGG19"):
        gan_step(batch_for(scale), g, None, opt_g, None, LossConfig(adversarial=0.0))


def test_divergence_is_reported_not_trained_on():
    spec, scale = GENERATORS["meta-srgan"]
    g = make(spec)
    opt_g = torch.optim.Adam(g.parameters(), 1e-3)
    batch = batch_for(scale)
    batch["hr"][0, 0, 0, 0] = float("nan")
    before = snapshot(g)
    with pytest.raises(FloatingPointError, match="diverged"):
        gan_step(batch, g, None, opt_g, None, LossConfig(adversarial=0.0, perceptual=0.0))
    assert all(torch.equal(before[k], p) for k, p in g.named_parameters())


@pytest.fixture
def no_vgg_anywhere(tmp_path, monkeypatch):
    """No $METASRGAN_VGG19 and an empty torch.hub cache."""
    monkeypatch.delenv("METASRGAN_VGG19", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def test_missing_vgg19_weights_say_where_they_were_looked_for(no_vgg_anywhere, tmp_path):
    with pytest.raises(VGG19WeightsMissing) as err:
        VGG19Features().load_pretrained()
    text = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in text and str(tmp_path / "hub") in text
    assert "loss.perceptual: 0" in text
    with pytest.raises(VGG19WeightsMissing, match="VGG19 weights file not found: .*nope.pth"):
        VGG19Features().load_pretrained(tmp_path / "nope.pth")


def test_trainer_with_perceptual_loss_and_no_weights_fails_before_training(
    no_vgg_anywhere, tmp_path
):
    from metasrgan.train.config import config_from_dict
    from metasrgan.train.loop import Trainer

    cfg = config_from_dict({
        "name": "t", "model": GENERATORS["meta-srgan"][0], "discriminator": TINY_D,
        "stages": [{"name": "a", "steps": 1, "data": [{"kind": "samples"}]}],
        "loss": {"perceptual": 0.006}, "device": "cpu",
    })  # fmt: skip
    with pytest.raises(FileNotFoundError, match="VGG19 weights"):
        Trainer(cfg, tmp_path, progress=False)


def test_vgg19_weights_load_by_torchvision_keys(tmp_path, monkeypatch):
    """An un-pretrained VGG19 saved under torchvision's key names loads from $METASRGAN_VGG19."""
    from safetensors.torch import save_file

    source = VGG19Features()
    save_file(
        {k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "v.safetensors"
    )
    monkeypatch.setenv("METASRGAN_VGG19", str(tmp_path / "v.safetensors"))
    loaded = VGG19Features().load_pretrained()
    assert all(
        torch.equal(a, b) for a, b in zip(source.parameters(), loaded.parameters(), strict=True)
    )
    assert not any(p.requires_grad for p in loaded.parameters())
