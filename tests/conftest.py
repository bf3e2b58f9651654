"""Shared fixtures: seeded torch, small real MRI crops bundled with the package."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def one_thread():
    """One torch thread: for tests of many small operations, which OpenMP's thread wake-ups
    slow down badly on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
