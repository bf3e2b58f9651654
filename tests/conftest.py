"""Shared fixtures: seeded torch, small real MRI crops bundled with the package."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield
