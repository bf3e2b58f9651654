"""The machine's limit for this project's work, measured in the run that uses it.

The generator is a stack of 3x3 convolutions with 64 channels (the feature extractor is 98%
of its multiply-adds), so the rate PyTorch reaches on one 64->64 3x3 convolution at the
working size (channels-last, batch 1, the same threads) is the roofline its whole work is
compared with: ``ratio = measured seconds / (FLOPs / that rate)``; 1.0 would be every
operation running as fast as the best-tuned one.  FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on the operations the code actually runs
(convolutions and matrix products, 2 FLOPs per multiply-add; element-wise work is not
counted and is part of what a ratio above 1 shows).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def conv_rate(size: int = 240, channels: int = 64, repeats: int = 7, device: str = "cpu") -> dict:
    """GFLOP/s of one ``channels -> channels`` 3x3 convolution on ``[1, C, size, size]``:
    the best of ``repeats`` calls (the limit) and their median."""
    torch.manual_seed(0)
    x = torch.randn(1, channels, size, size, device=device).to(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, device=device).to(memory_format=torch.channels_last)
    b = torch.randn(channels, device=device)
    flops = 2 * channels * channels * 9 * size * size
    times = []
    with torch.no_grad():
        for _ in range(2):
            F.conv2d(x, w, b, padding=1)
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            F.conv2d(x, w, b, padding=1)
            _sync(device)
            times.append(time.perf_counter() - start)
    return {
        "size": size,
        "gflops_best": flops / min(times) / 1e9,
        "gflops_median": flops / statistics.median(times) / 1e9,
    }


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the convolutions and matrix products ``fn`` runs (forward and backward),
    the fused CPU convolutions of :mod:`metasrgan.models.fused` included."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_fused_conv_flops()) as counter:
        fn()
    return int(counter.get_total_flops())


def _fused_conv_flops() -> dict:
    """FlopCounterMode formulas for oneDNN's fused convolutions (it knows only aten's)."""
    from torch.utils.flop_counter import conv_flop_count

    try:
        fused = torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return {}

    def flops(x, *args, out_shape, **kwargs):
        # (X, W, B, padding, stride, dilation, groups, attr, ...), or for the binary
        # overload (X, other, W, B, padding, stride, dilation, groups, attr, ...)
        w = args[1] if isinstance(args[6], int) else args[0]
        return conv_flop_count(list(x), list(w), list(out_shape))

    return {fused: flops}


class LimitBeside:
    """The limit read beside every call of :func:`metasrgan.inference.upscale_tensor` (best
    of 3, just before each call: a volume pass makes one per batch of slices).

    On this shared machine the limit moves by 30-70% within a minute-long volume pass, so
    readings before and after a pass bracket it poorly; one beside each batch follows it.
    ``spent`` and ``spent_cpu`` are the wall and CPU time the readings took (take them out
    of the pass); ``rate`` is their mean weighted by each call's time: the machine's speed
    over the pass (for equal work per call, the harmonic mean: the rate at which that work
    would take the pass's time)."""

    def __init__(self):
        self.rates, self.seconds, self.spent, self.spent_cpu = [], [], 0.0, 0.0

    def __enter__(self) -> LimitBeside:
        import metasrgan.inference as inference

        self._inference, self._original = inference, inference.upscale_tensor

        def beside(*args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            self.rates.append(conv_rate(repeats=3)["gflops_best"])
            called = time.perf_counter()
            self.spent += called - start
            self.spent_cpu += time.process_time() - cpu
            out = self._original(*args, **kwargs)
            self.seconds.append(time.perf_counter() - called)
            return out

        inference.upscale_tensor = beside
        return self

    def __exit__(self, *exc) -> None:
        self._inference.upscale_tensor = self._original

    @property
    def rate(self) -> float:
        return sum(t * r for t, r in zip(self.seconds, self.rates, strict=True)) / sum(self.seconds)


def ratio(seconds: float, flops: float, gflops: float) -> float:
    """Measured time over the time ``flops`` take at ``gflops``."""
    return seconds / (flops / (gflops * 1e9))


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def add_allocator_argument(parser) -> None:
    """``--allocator``: the benchmarks run as the ``metasrgan`` command does unless told."""
    parser.add_argument(
        "--allocator", choices=("keep", "default"), default="keep",
        help="keep: freed memory stays in the process for reuse, as the metasrgan command "
        "sets it (metasrgan.allocator); default: glibc's own policy (for A/B runs)",
    )  # fmt: skip


def use_allocator(choice: str) -> str:
    """Apply ``--allocator``; returns what is in effect (for the results)."""
    from metasrgan.allocator import keep_freed_memory

    if choice == "keep":
        return "keep" if keep_freed_memory() else "default (not glibc)"
    return "default"
