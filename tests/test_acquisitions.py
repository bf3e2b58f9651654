"""Acquisition-conditioned Meta-SRGAN, classical interpolation and the best-classical tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fixtures.models import CONDITIONED, with_random_weights

from metasrgan import evaluation
from metasrgan.checkpoint import load_model, save_model
from metasrgan.cli import main
from metasrgan.data.io import read_image
from metasrgan.interpolation import CLASSICAL, interpolate
from metasrgan.registry import make
from metasrgan.samples_path import sample_path


@pytest.fixture(scope="module")
def crop() -> torch.Tensor:
    vol = read_image(sample_path("colin27_val")).array
    image = vol[40:104, 50:114, 4].astype(np.float32)
    return torch.from_numpy(image / image.max())[None, None]


def test_a_conditioned_model_starts_at_each_acquisitions_interpolation(crop):
    model = make(CONDITIONED).eval()
    lr = crop[..., ::2, ::2].contiguous()
    with torch.no_grad():
        k = model(lr, 2.0)  # the default acquisition: k-space, sinc skip
        t = model(lr, (2.0, 1.0), acquisition="thick")
        b = model(lr, 2.0, acquisition="bicubic")
    torch.testing.assert_close(k, interpolate(lr, (64, 64), "sinc-mirror"))
    torch.testing.assert_close(t, interpolate(lr, (64, 32), "bicubic"))
    torch.testing.assert_close(b, interpolate(lr, (64, 64), "bicubic"))
    with pytest.raises(ValueError, match="knows the acquisitions kspace, thick, bicubic"):
        model(lr, 2.0, acquisition="spiral")


def test_the_condition_reaches_the_weight_predictor(crop):
    torch.manual_seed(0)
    model = make(CONDITIONED).eval()
    with torch.no_grad():
        for p in model.upscale.parameters():
            p.normal_(0, 0.05)
        lr = crop[..., ::2, ::2].contiguous()
        feats = model.extract_features(lr)
        r_k = model.residual(feats, 2.0, (64, 64), "kspace")
        r_b = model.residual(feats, 2.0, (64, 64), "bicubic")
        assert not torch.allclose(r_k, r_b)
        # fast path == per-pixel reference, conditioned, at an anisotropic scale
        scale = (2.5, 1.0)
        ref = model.upscale.forward_reference(
            feats, scale, (80, 32), model.condition(model_scale(scale), "thick", feats)
        )
        fast = model.upscale(
            feats, scale, (80, 32), model.condition(model_scale(scale), "thick", feats)
        )
        torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    cond = model.condition(model_scale((4.0, 1.0)), "thick", feats)
    assert cond.tolist()[:3] == [0.0, 1.0, 0.0] and cond[-1].item() == pytest.approx(math.log(4))


def model_scale(scale):
    from metasrgan.scale import Scale2d

    return Scale2d.of(scale)


def test_unconditioned_models_ignore_the_acquisition(crop):
    model = make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1}}).eval()
    lr = crop[..., ::2, ::2].contiguous()
    with torch.no_grad():
        assert torch.equal(model(lr, 2.0), model(lr, 2.0, acquisition="thick"))
    assert model.acquisitions == () and model.resolve_acquisition("kspace") is None


def test_bad_conditioning_specs_are_refused():
    for args, message in [
        ({"skip": "acquisition"}, "needs a list of acquisitions"),
        ({"acquisitions": ["kspace", "mri"]}, "'mri' is not one of"),
        ({"acquisitions": ["kspace"], "default_acquisition": "thick"}, "not in acquisitions"),
        ({"skip": "lanczos"}, "skip must be one of"),
    ]:
        with pytest.raises(ValueError, match=message):
            make({"name": "meta-srgan", "args": {"features": 8, "blocks": 1, **args}})


def test_init_from_an_unconditioned_model_starts_exactly_there(tmp_path, crop):
    from metasrgan.train.runs import load_init_weights

    plain = with_random_weights({"name": "meta-srgan", "args": {**CONDITIONED["args"],
                                 "skip": "bicubic", "acquisitions": [],
                                 "default_acquisition": None}}, 3)  # fmt: skip
    path = save_model(plain, tmp_path / "plain.safetensors")
    conditioned = make(CONDITIONED)
    load_init_weights(conditioned, str(path))
    lr = crop[..., ::2, ::2].contiguous()
    with torch.no_grad():
        torch.testing.assert_close(
            conditioned.eval()(lr, 2.0, acquisition="bicubic"), plain.eval()(lr, 2.0)
        )
    again = load_model(save_model(conditioned, tmp_path / "cond.safetensors"))
    assert again.acquisitions == ("kspace", "thick", "bicubic")


@pytest.mark.parametrize("method", CLASSICAL)
def test_classical_interpolators_keep_flat_images_and_pixel_centres(method):
    flat = torch.full((2, 1, 13, 17), 0.3, dtype=torch.float64)
    torch.testing.assert_close(
        interpolate(flat, (31, 40), method), torch.full((2, 1, 31, 40), 0.3, dtype=torch.float64)
    )
    if method == "sinc":  # exact on band-limited images: tests/test_degradations.py
        return
    # a linear ramp sampled at pixel centres stays close to a ramp (away from the borders):
    # Keys' a = -0.75 and Lanczos' normalised taps are only approximately linear-exact
    n, m = 20, 50
    ramp = torch.arange(n, dtype=torch.float64).expand(1, 1, 4, n)
    out = interpolate(ramp, (4, m), method)[0, 0, 0]
    centres = (torch.arange(m, dtype=torch.float64) + 0.5) * n / m - 0.5
    inner = slice(10, 40)
    tol = {"bicubic": 0.05, "lanczos": 0.02, "bspline": 2e-3}[method]
    torch.testing.assert_close(out[inner], centres[inner], atol=tol, rtol=0)


def test_unknown_interpolations_are_refused():
    with pytest.raises(ValueError, match="unknown interpolation"):
        interpolate(torch.zeros(1, 1, 4, 4), (8, 8), "nearest")


def test_zero_filled_sinc_beats_bicubic_on_a_kspace_truncated_slice():
    """A whole slice (background at its borders, as a field of view has)."""
    vol = read_image(sample_path("colin27_val")).array
    hr = torch.from_numpy(vol[..., 6] / vol.max()).double()[None, None]
    batch = evaluation.prepare(hr, evaluation.parse_scales("2")[0], "kspace")
    shape = tuple(batch.hr.shape[-2:])
    errors = {
        m: float(((interpolate(batch.lr, shape, m) - batch.hr) ** 2).mean()) for m in CLASSICAL
    }
    assert errors["sinc"] < errors["bicubic"] and errors["sinc"] < errors["lanczos"]


def test_evaluate_reports_the_gain_over_the_best_classical_baseline(tmp_path, capsys):
    model = make(CONDITIONED)
    path = save_model(model, tmp_path / "cond.safetensors")
    out = tmp_path / "eval"
    argv = ["evaluate", "--models", str(path), "--labels", "Cond", "--data", "colin27_val"]
    argv += ["--max-images", "2", "--scales", "2,3", "--through-plane-scales", "2,5"]
    argv += ["--degradation", "kspace", "thick", "--crop-size", "48", "--no-figures"]
    argv += ["--adapt", "0", "--no-progress", "-o", str(out)]  # the network as it is
    assert main(argv) == 0
    text = (out / "table.md").read_text()
    assert "Gain over the best classical baseline" in text and "### kspace" in text
    import csv

    with open(out / "gains.csv", newline="") as fh:
        gains = [r for r in csv.DictReader(fh) if r["region"] == "crop"]
    by = {(r["degradation"], r["scale"]): r for r in gains}
    assert set(by) == {("kspace", "2"), ("kspace", "3"), ("thick", "2"), ("thick", "5")}
    # an untrained conditioned model is exactly its skip (mirrored sinc on k-space LR,
    # bicubic on thick slices): close to the best classical method, never far above it
    for key in by:
        assert -3.0 < float(by[key]["psnr_gain"]) < 0.5, key
    assert main([*argv[:-2], "--degradation", "blur", "-o", str(tmp_path / "x")]) == 2
    assert "blur" in capsys.readouterr().err
