"""Shared pytest setup: deterministic seeds and a bounded thread count (CI has 2 cores)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - the global RNG, for any code that uses it
    torch.manual_seed(0)
