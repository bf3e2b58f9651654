"""The fast Meta-Upscale path equals the per-pixel reference (Meta-SR's formulation)."""

import pytest
import torch

from metasrgan.models.meta_upscale import MetaUpscale
from metasrgan.scale import TRAINED_SCALES

PAIRS = [(1.5, 3.2), (4.0, 1.1), (2.3, 3.7), (1.0, 2.5), (3.0, 2.0)]


pytestmark = pytest.mark.usefixtures("one_thread")  # many small operations


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


@pytest.mark.parametrize("scale", [2.37, (1.13, 2.41), 1.001])
def test_long_periods_equal_reference(module, scale):
    """Scales off the trained grid (q = 100, 1000) stay exact."""
    x = torch.randn(1, 64, 9, 12) * 0.5
    torch.testing.assert_close(
        module(x, scale), module.forward_reference(x, scale), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("scale", [2.0, 2.5, 3.7, (2.3, 1.5)])
def test_channels_last_input_and_small_chunks(module, monkeypatch, scale):
    """Both paths accept channels-last features; patch chunking does not change results."""
    import metasrgan.models.meta_upscale as mu

    x = torch.randn(2, 64, 15, 14) * 0.5
    ref = module.forward_reference(x, scale)
    torch.testing.assert_close(
        module(x.to(memory_format=torch.channels_last), scale), ref, atol=1e-5, rtol=1e-5
    )
    monkeypatch.setattr(mu, "PATCH_CHUNK_BYTES", 1)  # one row of period blocks at a time
    torch.testing.assert_close(module(x, scale), ref, atol=1e-5, rtol=1e-5)


def test_offset_groups_partition_the_phases():
    from metasrgan.models.meta_upscale import _offset_groups
    from metasrgan.scale import AxisScale

    for p, q in [(23, 10), (37, 10), (11, 10), (2, 1), (237, 100), (5, 5)]:
        axis = AxisScale(p, q)
        groups = _offset_groups(axis)
        assert len(groups) == q and groups[0][0] == 0 and groups[-1][1] == p
        for r0, (lo, hi) in enumerate(groups):
            assert hi > lo or p < q
            assert all(axis.phase_start(a) == r0 for a in range(lo, hi))


PATHS = ["_forward_row_phases", "_forward_offset_batched", "_forward_offset_groups"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("scale", [1.1, 2.0, 2.3, 3.7, (1.5, 3.2), (4.0, 1.3)])
def test_every_path_equals_reference(module, path, scale):
    """Each implementation behind forward(), whichever scale the dispatch gives it."""
    from metasrgan.scale import Scale2d

    s = Scale2d.of(scale)
    x = torch.randn(2, 64, 11, 13) * 0.5
    out = getattr(module, path)(x, s, s.out_shape(11, 13))
    torch.testing.assert_close(out, module.forward_reference(x, s), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("path", PATHS[1:])
def test_offset_paths_gradients(module, path):
    from metasrgan.scale import Scale2d

    s = Scale2d.of((2.3, 3.7))
    module = module.double()
    x1 = torch.randn(2, 64, 8, 9, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    g = torch.randn_like(module.forward_reference(x2, s))
    module.zero_grad()
    (getattr(module, path)(x1, s, s.out_shape(8, 9)) * g).sum().backward()
    fast_grads = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    (module.forward_reference(x2, s) * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-8, rtol=0)
    for a, b in zip(fast_grads, [p.grad for p in module.parameters()], strict=True):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-7)
    module.float()
