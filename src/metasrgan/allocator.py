"""Keep freed memory in the process, so large tensors are not paid for again in page faults.

glibc's ``malloc`` serves large blocks with ``mmap`` and gives them back to the kernel when
they are freed, and it trims freed memory at the top of its heap whenever more than a few
tens of MB are free. A network's feature maps are large, short-lived and all the same
size, so each new one touches fresh pages: one 240x240 slice at x2 through the shipped
model took 25,104 minor page faults per call (98 MB), and a batch of 5 slices 425,000
(1.7 GB). Without them, slices and volumes ran 20-30% faster on this project's machine
(``benchmarks/README.md``, "Page faults"). The tuning here is that of ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_``, set from inside the process: blocks up to 1 GiB come from the
heap, and freed memory stays there for the next block instead of going back to the
kernel. The cost is that the resident size stays at its peak until the process ends
(the peak itself is unchanged).

Only the ``metasrgan`` command and the benchmarks call :func:`keep_freed_memory`.
A library does not change the allocator of the process that imports it. Applications
that run many volumes can call it themselves. It does nothing where the C library is
not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""``mallopt`` parameters (``<malloc.h>``)."""

KEEP_BYTES = 1 << 30
"""Blocks up to this size come from the heap, and up to this much free memory stays in it."""


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc to keep freed blocks for reuse (see the module docstring); True if done.

    Idempotent. It returns False, changing nothing, where the C library is not glibc or
    refuses the setting.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    trimmed = mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1
    mapped = mallopt(M_MMAP_THRESHOLD, KEEP_BYTES) == 1
    return trimmed and mapped
