"""Freed memory is kept for reuse (metasrgan.allocator), as the command line sets it."""

from __future__ import annotations

import platform
import resource

import nibabel as nib
import numpy as np
import pytest
import torch

from metasrgan.allocator import keep_freed_memory
from metasrgan.cli import main
from metasrgan.inference import load, upscale_tensor
from metasrgan.samples_path import sample_path


def _faults(fn) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning is glibc's")
def test_a_slice_upscaled_again_reuses_the_memory_of_the_first():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent
    slab = np.asarray(nib.load(sample_path("mni152_train")).dataobj, dtype=np.float32)
    x = torch.from_numpy(slab[:, :, 4] / slab.max())[None, None].contiguous()
    model = load(None)

    def run():
        with torch.inference_mode():
            upscale_tensor(model, x, 2.0)

    run()  # the heap grows until it holds a call's blocks
    feature_map_pages = x.numel() * 64 * 4 // resource.getpagesize()
    # glibc's own policy: about 4 feature maps of fresh pages on every call (7,159 here)
    assert min(_faults(run) for _ in range(4)) < feature_map_pages // 4


def test_the_command_line_keeps_freed_memory(capsys):
    keep_freed_memory.cache_clear()
    assert main(["info"]) == 0
    assert keep_freed_memory.cache_info().currsize == 1
    capsys.readouterr()
