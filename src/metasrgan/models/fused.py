"""A convolution and the PReLU after it in one oneDNN call (CPU inference).

After the head and the first 3x3 convolution of each residual block the PReLU sweeps the
whole 64-channel map through memory again.  oneDNN can apply it to each output block while
it is still in cache (a post-op: the fused convolutions PyTorch's inductor emits,
``torch.ops.mkldnn._convolution_pointwise``).  On 240x240 slices at x2 (shipped layout, 2
threads, modes interleaved slice by slice, the limit read beside each) the ratio to the
convolution roofline went from 1.17 to 1.09; the feature extractor alone, alternating, took
p25 180 ms against 190 ms.  Outputs are equal to 1e-5.

oneDNN keeps what it builds for each input shape it has run fused, for the life of the
process (its primitive caches, up to 1,024 primitives): 25 MB more than unfused for the
extractor on each new slice shape near 200x200, measured.  So fusion serves the shapes met
first, until their output maps add up to :data:`SHAPE_BUDGET_BYTES`, and other shapes run
unfused: memory stays bounded over a BIDS run of many sizes.  Background skipping, whose
windows change shape with every slice, runs unfused.  The skip adds stay unfused: the binary
post-op kept about one more map per shape, for no measurable gain (1.10 against 1.09).

Only where it computes the same function: CPU float32 without autograd, a plain convolution
(zero padding given as numbers) and a single PReLU slope.  Elsewhere (training, GPUs, a
PyTorch built without oneDNN) :func:`usable` is False and callers run their unfused layers.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

ENABLED = True
"""Set False to run every layer unfused (tests compare the two paths)."""
SHAPE_BUDGET_BYTES = 128 << 20
"""Output maps of the input shapes that may run fused (4 slice sizes near 240x240)."""

_shapes: set[tuple] = set()
_used = [0]
_lock = threading.Lock()


def _ops():
    """The fused operator, or None where this PyTorch build lacks it."""
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


def usable(conv: nn.Module, act: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``act(conv(x))`` can run fused, with the same result (a new input shape that
    can takes its place in the shape budget)."""
    return (
        ENABLED
        and isinstance(conv, nn.Conv2d)
        and isinstance(act, nn.PReLU)
        and act.num_parameters == 1
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32 == conv.weight.dtype
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and _ops() is not None
        and _within_budget(conv, x)
    )


def _within_budget(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """True for an input shape already fused, or a new one the budget has room for."""
    key = (tuple(x.shape), conv.out_channels)
    with _lock:
        if key in _shapes:
            return True
        out_bytes = x.shape[0] * conv.out_channels * x.shape[-2] * x.shape[-1] * 4
        if _used[0] + out_bytes > SHAPE_BUDGET_BYTES:
            return False
        _shapes.add(key)
        _used[0] += out_bytes
        return True


def conv_prelu(
    conv: nn.Conv2d, act: nn.PReLU, x: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``act(conv(x) + bias)`` for a one-slope PReLU (where :func:`usable`); ``bias``
    (``[C]``) is added to the convolution's own."""
    b = conv.bias if bias is None else (bias if conv.bias is None else conv.bias + bias)
    geometry = list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups
    return _ops()(x, conv.weight, b, *geometry, "leaky_relu", [float(act.weight)], "")
