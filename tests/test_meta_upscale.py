"""The fast Meta-Upscale path equals the per-pixel reference (Meta-SR's formulation)."""

import pytest
import torch

from metasrgan.models.meta_upscale import MetaUpscale
from metasrgan.scale import TRAINED_SCALES

PAIRS = [(1.5, 3.2), (4.0, 1.1), (2.3, 3.7), (1.0, 2.5), (3.0, 2.0)]


@pytest.fixture(scope="module")
def module():
    torch.manual_seed(0)
    return MetaUpscale(64, 1, 3)


@pytest.mark.parametrize("scale", list(TRAINED_SCALES) + PAIRS)
def test_fast_equals_reference_float32(module, scale):
    x = torch.randn(2, 64, 13, 11) * 0.5
    fast = module(x, scale)
    ref = module.forward_reference(x, scale)
    assert fast.shape == ref.shape
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.1, 2.0, 2.3, 2.7, 3.7, 4.0, (1.5, 3.2), (2.3, 3.7)])
def test_fast_equals_reference_gradients(module, scale):
    module = module.double()
    x1 = torch.randn(2, 64, 9, 10, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    g = torch.randn_like(module.forward_reference(x2, scale))
    module.zero_grad()
    (module(x1, scale) * g).sum().backward()
    fast_grads = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    (module.forward_reference(x2, scale) * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=0)
    for a, b in zip(fast_grads, [p.grad for p in module.parameters()], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-7)
    module.float()


def test_explicit_output_shape(module):
    from metasrgan.scale import AxisScale, Scale2d, scale_from_sizes

    fh, fw = scale_from_sizes(13, 40), scale_from_sizes(11, 25)
    s = Scale2d(AxisScale(fh.numerator, fh.denominator), AxisScale(fw.numerator, fw.denominator))
    x = torch.randn(1, 64, 13, 11)
    y = module(x, s, (40, 25))
    assert y.shape == (1, 1, 40, 25)
    torch.testing.assert_close(y, module.forward_reference(x, s, (40, 25)), atol=1e-5, rtol=1e-5)


def test_pixels_land_where_the_integer_rule_says():
    """With a kernel that copies the centre feature, output (i, j) is input (i*q//p, j*q//p)."""
    m = MetaUpscale(1, 1, 3)
    with torch.no_grad():
        last = m.weight_prediction.body[-1]
        last.weight.zero_()
        last.bias.zero_()
        last.bias[4] = 1.0  # centre tap of the 3x3 kernel
    x = torch.arange(30 * 30, dtype=torch.float32).view(1, 1, 30, 30)
    for s in (2.3, 2.7, 3.7):
        y = m(x, s)[0, 0]
        h = y.shape[0]
        rows = [(i * int(s * 10)) for i in range(h)]
        expected_r = torch.tensor([(i * 10) // int(s * 10) for i in range(h)])
        assert torch.equal(y[:, 0].long(), expected_r * 30), (s, rows[:3])
