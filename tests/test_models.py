import pytest
import torch

from metasrgan.registry import available, count_parameters, make
from metasrgan.scale import TRAINED_SCALES


@pytest.mark.parametrize(
    "name, expected", [("meta-srgan", 561_926), ("srgan", 565_768), ("edsr", 40_720_385)]
)
def test_parameter_counts_match_the_paper(name, expected):
    assert count_parameters(make({"name": name})) == expected


def test_meta_upscale_module_has_149056_parameters():
    assert count_parameters(make({"name": "meta-srgan"}).upscale) == 149_056


def test_registry_lists_models_and_rejects_unknown():
    assert {"meta-srgan", "srgan", "edsr", "discriminator", "vgg19-features"} <= set(available())
    with pytest.raises(KeyError, match="unknown model"):
        make({"name": "nope"})
    with pytest.raises(ValueError, match="bad arguments"):
        make({"name": "meta-srgan", "args": {"colour": 3}})
    with pytest.raises(ValueError, match="unknown keys"):
        make({"name": "meta-srgan", "argz": {}})


def test_meta_srgan_output_shapes_at_all_30_scales():
    model = make({"name": "meta-srgan"}).eval()
    x = torch.rand(1, 1, 23, 17)
    with torch.no_grad():
        for s in TRAINED_SCALES:
            y = model(x, s)
            assert y.shape == (1, 1, int(23 * s + 1e-9), int(17 * s + 1e-9)), s


@pytest.mark.parametrize("pair", [(1.5, 3.2), (4.0, 1.1), (2.0, 3.0), (1.0, 5.0)])
def test_asymmetric_scale_pairs(pair):
    model = make({"name": "meta-srgan"}).eval()
    with torch.no_grad():
        y = model(torch.rand(2, 1, 20, 10), pair)
    assert y.shape == (2, 1, int(20 * pair[0]), int(10 * pair[1]))


def test_channels_option_for_rgb():
    model = make({"name": "meta-srgan", "args": {"channels": 3}}).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 12, 12), 2.5).shape == (1, 3, 30, 30)


@pytest.mark.parametrize(
    "spec, scale",
    [
        ({"name": "meta-srgan"}, 2.7),
        ({"name": "meta-srgan", "args": {"skip": "bicubic", "norm": "none"}}, 1.3),
        ({"name": "srgan"}, 2),
    ],
)
def test_gradients_reach_every_parameter(spec, scale):
    model = make(spec).train()
    x = torch.rand(2, 1, 16, 16)
    if spec.get("args", {}).get("skip") == "bicubic":
        # the residual branch starts at zero: one update opens the path to every layer
        model(x, scale).square().mean().backward()
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        model.zero_grad()
    y = model(x, scale)
    y.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_edsr_and_srgan_are_x2_only():
    srgan = make({"name": "srgan"}).eval()
    with torch.no_grad():
        assert srgan(torch.rand(1, 1, 12, 12)).shape == (1, 1, 24, 24)
    with pytest.raises(ValueError, match="only upscales by x2"):
        srgan(torch.rand(1, 1, 12, 12), 3)
    edsr = make({"name": "edsr", "args": {"features": 16, "blocks": 2}}).eval()
    with torch.no_grad():
        assert edsr(torch.rand(1, 1, 10, 10)).shape == (1, 1, 20, 20)


@pytest.mark.parametrize("size", [(96, 96), (48, 80), (33, 47)])
def test_discriminator_takes_any_size(size):
    d = make({"name": "discriminator"}).eval()
    with torch.no_grad():
        p = d(torch.rand(3, 1, *size))
    assert p.shape == (3, 1) and ((p > 0) & (p < 1)).all()
    logits = make({"name": "discriminator", "args": {"sigmoid": False}})
    gradients = torch.rand(1, 1, 40, 40, requires_grad=True)
    logits(gradients).sum().backward()
    assert gradients.grad is not None


def test_bicubic_skip_starts_exactly_at_bicubic():
    from metasrgan.models import bicubic_resize

    model = make({"name": "meta-srgan", "args": {"skip": "bicubic", "norm": "none"}}).eval()
    x = torch.rand(1, 1, 20, 20)
    with torch.no_grad():
        y = model(x, 2.5)
    torch.testing.assert_close(y, bicubic_resize(x, (50, 50)))
