"""Tiny checkpoints, benchmark and recipe for the app tests (AppTest, browser, threads): seconds of CPU in all.

``write_app_env(root)`` writes everything the app reads into ``root`` and returns the environment variables that
point the app at it (``FGVC_CHECKPOINT_DIR``, ``FGVC_DATA_ROOT``, ``FGVC_RUNS_DIR``, ``FGVC_RECIPES_DIR``), so no
test depends on the demo checkpoints or data that CI does not have.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

import fgvc_core
from fgvc_core.data.transforms import preprocess_config
from tests.engine_fixtures import TINY_MODELS, write_config, write_tiny_benchmark

NUM_CLASSES = 4
RAMS_SIZE = 32  # 4x4 patch grid of 8 px
CRA_SIZE = 64  # stage 5 is 2x2
CRA_OPTIONS: dict[str, Any] = {
    "backbone": "resnet_tiny",
    "conv_channels": 16,
    "conv_mid_channels": 8,
    "head_hidden": 16,
    "reduction": 4,
}


def tiny_rams(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    options = {k: v for k, v in TINY_MODELS["rams_trans"].items() if k != "name"}
    return fgvc_core.build_model("rams_trans", NUM_CLASSES, **options).eval()


def tiny_cra(seed: int = 0, **options: Any) -> torch.nn.Module:
    """A random tiny CRA-SMRA whose eval BatchNorm statistics are not the identity (so stages differ)."""
    torch.manual_seed(seed)
    model = fgvc_core.build_model("cra_smra", NUM_CLASSES, **{**CRA_OPTIONS, **options})
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _meta(classes: list[str], size: int, bench: Path, metrics: dict[str, float]) -> dict[str, Any]:
    return {
        "classes": classes,
        "preprocess": preprocess_config("demo", size),
        "dataset": {"name": "synth", "root": str(bench), "train_split": "train", "test_split": "test"},
        "metrics": metrics,
        "step": 10,
        "epoch": 1,
    }


def write_app_env(root: Path) -> dict[str, str]:
    """Benchmark, demo checkpoints, a γ sweep of two checkpoints and a tiny recipe under ``root``."""
    bench = write_tiny_benchmark(root / "bench", num_classes=NUM_CLASSES, per_class=3, size=64)
    classes = fgvc_core.build_dataset("synth", bench, "test").classes
    ckpt = root / "checkpoints"
    fgvc_core.save_checkpoint(
        tiny_rams(0),
        ckpt / "rams_trans_demo.safetensors",
        _meta(classes, RAMS_SIZE, bench, {"combined_top1": 0.5, "scale1_top1": 0.25, "scale2_top1": 0.5}),
    )
    fgvc_core.save_checkpoint(
        tiny_cra(0), ckpt / "cra_smra_demo.safetensors", _meta(classes, CRA_SIZE, bench, {"combined_top1": 0.75})
    )
    for gamma, acc in ((0.0, 0.25), (1.0, 0.5)):
        fgvc_core.save_checkpoint(
            tiny_cra(int(gamma) + 1, gamma=gamma),
            ckpt / "sweep" / f"cra_smra_gamma{gamma:g}.safetensors",
            _meta(classes, CRA_SIZE, bench, {"combined_top1": acc, "stage5_top1": acc / 2}),
        )
    recipes = root / "recipes"
    recipes.mkdir()
    recipe = {
        "model": {"name": "cra_smra", **CRA_OPTIONS},
        "data": {"name": "synth_stream", "root": str(bench), "num_classes": NUM_CLASSES, "train_samples": 16,
                 "img_size": 32, "seed": 1},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.05, "workers": 0, "log_every": 1, "output": "unused"},
    }  # fmt: skip
    write_config(recipes / "tiny_demo.yaml", recipe)
    return {
        "FGVC_CHECKPOINT_DIR": str(ckpt),
        "FGVC_DATA_ROOT": str(bench),
        "FGVC_RUNS_DIR": str(root / "runs"),
        "FGVC_RECIPES_DIR": str(recipes),
    }


@contextmanager
def app_environment(root: Path) -> Iterator[dict[str, str]]:
    """``write_app_env(root)`` with its variables set for the duration (and torch's thread count given back)."""
    with environment(write_app_env(root)) as variables:
        yield variables


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[dict[str, str]]:
    """``variables`` set in ``os.environ`` for the duration; the previous values and torch's threads given back."""
    saved = {k: os.environ.get(k) for k in variables}
    threads = torch.get_num_threads()  # app.py sets the app's threads; give the other tests theirs back
    os.environ.update(variables)
    try:
        yield variables
    finally:
        torch.set_num_threads(threads)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def write_cub_checkpoint(root: Path, num_classes: int = NUM_CLASSES, per_class: int = 4) -> dict[str, Any]:
    """A CUB-layout dataset under ``root/cub`` and a tiny RAMS-Trans trained on it (by its sidecar) in ``root``.

    Returns ``{"cub": Written, "checkpoint": path}``; the checkpoint's classes are the CUB fixture's classes.
    """
    from tests.layout_fixtures import make_cub

    written = make_cub(root / "cub", num_classes=num_classes, per_class=per_class)
    meta = _meta(written.classes, RAMS_SIZE, written.root, {"combined_top1": 0.5})
    meta["dataset"] = {"name": "cub", "root": str(written.root), "train_split": "train", "test_split": "test"}
    path = root / "checkpoints" / "rams_trans_cub.safetensors"
    fgvc_core.save_checkpoint(tiny_rams(3), path, meta)
    return {"cub": written, "checkpoint": path}


def sample_box(at):
    """The sidebar's Sample selectbox (its key names the dataset, see ``sidebar.sample_widget_key``)."""
    (box,) = [s for s in at.sidebar.selectbox if s.label == "Sample"]
    return box
