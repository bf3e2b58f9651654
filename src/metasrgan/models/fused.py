"""A convolution and the element-wise step after it in one oneDNN call (CPU inference).

After each 3x3 convolution of a residual block the PReLU or the skip add sweeps the whole
64-channel map through memory again.  oneDNN can apply either to each output block while it
is still in cache (a post-op: the fused convolutions PyTorch's inductor emits,
``torch.ops.mkldnn._convolution_pointwise``).  On five 240x240 residual blocks (2 threads,
channels-last) the fused chain took 180-200 ms against 205-213 ms unfused, with equal
outputs; the PReLUs and adds were 7% of a dense slice's time.

Only where it computes the same function: CPU float32 without autograd, a plain convolution
(zero padding given as numbers) and a single PReLU slope.  Elsewhere (training, GPUs, a
PyTorch built without oneDNN) :func:`usable` is False and callers run their unfused layers.
"""

from __future__ import annotations

import torch
from torch import nn

ENABLED = True
"""Set False to run every layer unfused (tests compare the two paths)."""


def _ops():
    """The fused operators, or None where this PyTorch build lacks them."""
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


def usable(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv`` applied to ``x`` can run fused, with the same result."""
    return (
        ENABLED
        and isinstance(conv, nn.Conv2d)
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32 == conv.weight.dtype
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and _ops() is not None
    )


def _geometry(conv: nn.Conv2d) -> tuple[list, list, list, int]:
    return list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups


def conv_leaky(
    conv: nn.Conv2d, x: torch.Tensor, slope: float, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``leaky_relu(conv(x) + bias, slope)`` (PReLU with one slope); ``bias`` (``[C]``)
    is added to the convolution's own."""
    b = conv.bias if bias is None else (bias if conv.bias is None else conv.bias + bias)
    return _ops()(x, conv.weight, b, *_geometry(conv), "leaky_relu", [slope], "")


def conv_add(conv: nn.Conv2d, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``conv(x) + other`` (``other`` has the output's shape)."""
    return _ops().binary(x, other, conv.weight, conv.bias, *_geometry(conv),
                         "add", 1.0, None, [], "")  # fmt: skip


def single_slope(act: nn.Module) -> float | None:
    """The slope of a one-parameter PReLU (None for anything else)."""
    if isinstance(act, nn.PReLU) and act.num_parameters == 1:
        return float(act.weight.detach())
    return None
