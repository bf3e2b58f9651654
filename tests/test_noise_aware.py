"""The noise-aware, data-consistent Meta-SRGAN: noise estimate, acquired band, exact tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.models import AWARE, with_random_weights

from metasrgan.background import BackgroundSkip
from metasrgan.checkpoint import save_model
from metasrgan.data.io import read_image
from metasrgan.degradations import fourier_resize
from metasrgan.degradations.fourier import acquired_band
from metasrgan.degradations.noise import add_noise
from metasrgan.models.meta_srgan import BAND_GATE_START
from metasrgan.registry import make
from metasrgan.samples_path import sample_path
from metasrgan.tiling import upscale_tiled


@pytest.fixture(scope="module")
def slab() -> np.ndarray:
    vol = read_image(sample_path("colin27_val")).array.astype(np.float32)
    return vol / vol.max()


@pytest.fixture(scope="module")
def crop(slab) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(slab[30:110, 40:112, 4]))[None, None]


def random_model(seed: int = 0) -> torch.nn.Module:
    model = with_random_weights(AWARE, seed).eval()
    with torch.no_grad():
        model.band_gate.copy_(torch.tensor(BAND_GATE_START))
    return model


def test_the_noise_level_is_one_value_per_image_from_the_whole_image(crop):
    from metasrgan.models.blocks import classical_sigma, donoho_sigma

    g = torch.Generator().manual_seed(0)
    noisy = [add_noise(crop, sigma, "gaussian", g) for sigma in (0.01, 0.03, 0.06)]
    for image, sigma in zip(noisy, (0.01, 0.03, 0.06), strict=True):  # a real slice, HR
        assert float(donoho_sigma(image)[0]) == pytest.approx(sigma, rel=0.3, abs=0.005)
    assert donoho_sigma(crop[..., :1, :1]).tolist() == [0.0]
    x = torch.cat([crop, noisy[1]])
    with torch.no_grad():
        fresh = make(AWARE).noise_level(x)  # a new estimator starts as the classical one
        torch.testing.assert_close(fresh, classical_sigma(x) + 1e-3)
        model = random_model()
        levels = model.noise_level(x)
        assert levels.shape == (2,) and bool((levels > 0).all())
        torch.testing.assert_close(model.noise_level(x, 0.02), torch.full((2,), 0.02))


def test_the_background_tells_noise_from_anatomy_in_k_space_truncated_slices(slab):
    from metasrgan.models.blocks import background_sigma, classical_sigma, donoho_sigma

    whole = torch.from_numpy(np.ascontiguousarray(slab[..., 4]))[None, None]
    lr = fourier_resize(whole, (whole.shape[-2] // 2, whole.shape[-1] // 2))  # x2 matrix
    g = torch.Generator().manual_seed(3)
    noisy = torch.cat([add_noise(lr, s, "rician", g) for s in (0.01, 0.03)])
    clean_level = float(classical_sigma(lr)[0])
    assert clean_level < 0.5 * float(donoho_sigma(lr)[0])  # the anatomy's detail is not noise
    for level, sigma in zip(background_sigma(noisy).tolist(), (0.01, 0.03), strict=True):
        assert level == pytest.approx(sigma, rel=0.25)  # Rayleigh air, read back as sigma
    assert clean_level < 0.25 * float(classical_sigma(noisy)[1])
    anatomy = torch.full((1, 1, 40, 40), 0.5)  # no dark block: no background estimate
    assert background_sigma(anatomy).tolist() == [float("inf")]
    assert background_sigma(lr[..., :1, :1]).tolist() == [float("inf")]


def test_the_band_is_trusted_only_when_clean_and_unfiltered(slab):
    from metasrgan.degradations.fourier import band_edge_ratio

    model = random_model()
    whole = torch.from_numpy(np.ascontiguousarray(slab[..., 4]))[None, None]
    shape = (whole.shape[-2] // 2, whole.shape[-1] // 2)
    plain = fourier_resize(whole, shape)
    filtered = fourier_resize(whole, shape, window="hamming")
    noisy = add_noise(plain, 0.04, "rician", torch.Generator().manual_seed(4))
    ratios = band_edge_ratio(torch.cat([plain, filtered, noisy])).tolist()
    assert ratios[1] < ratios[0] / 10 < ratios[2] / 10  # the filter lowers it, noise raises it
    assert band_edge_ratio(plain[..., :3, :3]).tolist() == [1.0]
    x = torch.cat([plain, filtered, noisy])
    with torch.no_grad():
        trust = model.band_trust(x, torch.tensor([0.001, 0.001, 0.04])).tolist()
    assert trust[0] > 0.9 and trust[1] < 0.1 and trust[2] < 0.1


def test_a_volume_gets_one_noise_level_from_its_slices(tmp_path, slab):
    from metasrgan.intensity import IntensityMap
    from metasrgan.volume import _pass_statistics

    def _volume_noise(model, moved, intensity):
        noise, gain = _pass_statistics(model, moved, intensity, "kspace", (True, True))
        assert gain is None  # these models do not self-calibrate
        return noise

    model = random_model(5)
    moved = np.ascontiguousarray(np.moveaxis(slab, -1, 0))
    moved = np.concatenate([moved, np.zeros((3, *moved.shape[1:]), np.float32)])
    intensity = IntensityMap.fit(moved)
    level = _volume_noise(model, moved, intensity)
    with torch.no_grad():
        each = model.noise_level(torch.from_numpy(intensity.apply(moved[:-3], clip=False))[:, None])
    assert level == pytest.approx(float(each.median()), rel=1e-5)  # empty slices do not vote
    assert _volume_noise(make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1}}),
                         moved, IntensityMap.fit(moved)) is None  # fmt: skip


def test_the_acquired_band_is_a_projection():
    x = torch.rand(2, 1, 33, 30, dtype=torch.float64)
    band = acquired_band(x, (13, 12))
    torch.testing.assert_close(acquired_band(band, (13, 12)), band)
    torch.testing.assert_close(fourier_resize(x - band, (13, 12)), torch.zeros(2, 1, 13, 12,
                               dtype=torch.float64), atol=1e-12, rtol=0)  # fmt: skip


def test_clean_kspace_inputs_keep_the_acquired_band_and_noisy_ones_may_change_it(crop):
    model = random_model()
    lr = fourier_resize(crop, (32, 29))
    noisy = add_noise(lr, 0.05, "rician", torch.Generator().manual_seed(2))
    with torch.no_grad():
        clean_out = model(lr, 2.5, noise=0.001)
        noisy_out = model(noisy, 2.5, noise=0.05)
        both = torch.cat([lr, noisy])
        trust = model.band_trust(both, model.noise_level(both, torch.tensor([0.001, 0.05])))
    assert trust[0] > 0.99 and trust[1] < 0.01
    # trust 0.995 (the band-edge rule's logistic): the band is kept to 0.5% of the residual's
    torch.testing.assert_close(fourier_resize(clean_out, lr.shape[-2:]), lr, atol=3e-4, rtol=0)
    assert (fourier_resize(noisy_out, noisy.shape[-2:]) - noisy).abs().max() > 1e-3
    with torch.no_grad():  # other acquisitions have no such constraint
        thick = model(lr, 2.5, acquisition="thick")
    assert (fourier_resize(thick, lr.shape[-2:]) - lr).abs().max() > 1e-3


def test_the_noise_level_reaches_the_features(crop):
    model = random_model(1)
    with torch.no_grad():
        a = model(crop, 2.0, acquisition="bicubic", noise=0.0)
        b = model(crop, 2.0, acquisition="bicubic", noise=0.04)
        auto = model(crop, 2.0, acquisition="bicubic")
        given = model(crop, 2.0, acquisition="bicubic", noise=model.noise_level(crop))
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(auto, given)


@pytest.mark.parametrize("acquisition", ["kspace", "thick"])
def test_tiles_and_background_skipping_match_the_whole_image(crop, acquisition):
    model = random_model(2)
    x = torch.cat([crop, add_noise(crop, 0.03, "rician", torch.Generator().manual_seed(3))])
    with torch.no_grad():
        whole = model(x, 2.5, acquisition=acquisition)
        tiled = upscale_tiled(model, x, 2.5, tile=16, acquisition=acquisition)
        torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)
        padded = torch.zeros(2, 1, 120, 110)
        padded[..., 20:100, 19:91] = crop
        skip = BackgroundSkip(model, 2.0, acquisition, noise=0.02)
        dense = model(padded, 2.0, acquisition=acquisition, noise=0.02)
        torch.testing.assert_close(skip(padded), dense, atol=1e-5, rtol=0)
        assert BackgroundSkip(model, 2.0, acquisition)(padded) is None  # no level: dense


def test_init_from_an_older_model_keeps_its_network(tmp_path, crop):
    from metasrgan.train.runs import load_init_weights

    older = with_random_weights({"name": "meta-srgan", "args": {**AWARE["args"],
                                 "noise_input": False, "data_consistency": False}}, 4)  # fmt: skip
    path = save_model(older, tmp_path / "older.safetensors")
    aware = make(AWARE)
    load_init_weights(aware, str(path))
    with torch.no_grad():  # the noise bias starts at zero: thick and bicubic are unchanged
        torch.testing.assert_close(
            aware.eval()(crop, 2.0, acquisition="thick"),
            older.eval()(crop, 2.0, acquisition="thick"),
        )
    assert aware.band_gate.tolist() == pytest.approx(BAND_GATE_START)


def test_data_consistency_needs_a_sinc_skip():
    with pytest.raises(ValueError, match="data_consistency needs"):
        make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1, "skip": "bicubic",
                                             "data_consistency": True}})  # fmt: skip


def test_a_chain_reports_the_noise_it_added_and_draws_as_before(crop):
    from metasrgan.degradations import make_chain

    noise = {"name": "noise", "args": {"sigma": [0.01, 0.04], "p": 0.5}}
    chain = make_chain({"acquisition": "kspace", "steps": [{"name": "kspace"}, noise]})
    hr = crop.expand(8, -1, -1, -1)
    lr, sigma = chain.degrade(hr, (40, 36), torch.Generator().manual_seed(0))
    again = chain(hr, (40, 36), torch.Generator().manual_seed(0))
    torch.testing.assert_close(lr, again)  # same draws: resumed runs stay exact
    assert sigma.shape == (8,) and bool((sigma == 0).any()) and bool((sigma > 0.01).any())
    clean = fourier_resize(crop, (40, 36)).clamp(0, 1)
    for k in range(8):  # clean images are the k-space truncation itself
        assert bool(torch.equal(lr[k : k + 1], clean)) == (float(sigma[k]) == 0.0)


def test_the_training_step_teaches_the_estimator_the_added_noise(crop):
    from metasrgan.train.config import LossConfig
    from metasrgan.train.step import gan_step

    torch.manual_seed(6)
    model = make(AWARE).train()
    hr = crop[..., :60, :60].expand(4, -1, -1, -1).contiguous()
    lr = torch.nn.functional.interpolate(hr, size=(30, 30), mode="area")
    noise = torch.tensor([0.0, 0.0, 0.03, 0.03])
    lr = add_noise(lr, noise.view(4, 1, 1, 1), "rician", torch.Generator().manual_seed(7))
    batch = {"hr": hr, "lr": lr, "scale": 2.0, "acquisition": "bicubic", "noise": noise}
    opt = torch.optim.Adam(model.noise_estimator.parameters(), lr=1e-2)
    loss = LossConfig(l1=1.0, adversarial=0.0, perceptual=0.0, noise_level=0.01)
    first = gan_step(batch, model, None, opt, None, loss)["l_g_noise"]
    for _ in range(60):
        last = gan_step(batch, model, None, opt, None, loss)["l_g_noise"]
    assert last < 0.8 * first
    with torch.no_grad():
        level = model.noise_level(lr)
    assert float(level[2:].min()) > float(level[:2].max())  # noisy ones read noisier
    logs = gan_step(batch, model, None, opt, None, LossConfig(adversarial=0.0, perceptual=0.0))
    assert "l_g_noise" not in logs  # off unless configured
