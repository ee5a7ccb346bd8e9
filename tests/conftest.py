"""Shared pytest setup: deterministic seeds and a bounded thread count (CI has 2 cores)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import fgvc_core
from fgvc_core.data.transforms import preprocess_config
from tests.engine_fixtures import TINY_MODELS, write_tiny_benchmark

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - the global RNG, for any code that uses it
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """An untrained tiny RAMS-Trans checkpoint (4 classes, 32 px) and its tiny synth benchmark folder."""
    root = tmp_path_factory.mktemp("eval")
    bench = write_tiny_benchmark(root / "bench", num_classes=4, per_class=6)
    test = fgvc_core.build_dataset("synth", bench, "test")
    options = {k: v for k, v in TINY_MODELS["rams_trans"].items() if k != "name"}
    torch.manual_seed(0)
    model = fgvc_core.build_model("rams_trans", 4, **options)
    meta = {
        "classes": test.classes,
        "preprocess": preprocess_config("demo", 32),
        "dataset": {"name": "synth_stream", "root": str(bench), "train_split": "train", "test_split": "test"},
    }
    return fgvc_core.save_checkpoint(model, root / "tiny.safetensors", meta), bench
