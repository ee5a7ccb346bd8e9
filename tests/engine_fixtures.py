"""Tiny configs and benchmarks shared by the engine tests (a few seconds of CPU each)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from fgvc_core.engine.config import merge_defaults

TINY_MODELS: dict[str, dict[str, Any]] = {
    "rams_trans": {
        "name": "rams_trans",
        "backbone": "vit_tiny_patch16_224",
        "img_size": 32,
        "patch_size": 8,
        "drop_rate": 0.0,
        "vit_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2},
    },
    "cra_smra": {  # cram_smram (every loss term), 1.3 M weights; stage 5 is 1x1 at 32 px
        "name": "cra_smra",
        "backbone": "resnet_tiny",
        "conv_channels": 16,
        "conv_mid_channels": 8,
        "head_hidden": 16,
        "reduction": 4,
    },
    "vit_classifier": {
        "name": "vit_classifier",
        "backbone": "vit_tiny_patch16_224",
        "img_size": 32,
        "patch_size": 8,
        "vit_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2},
    },
}

# Options that make a model's training draw random numbers (dropout), so that an exact resume must restore the RNG.
RESUME_OPTIONS: dict[str, dict[str, Any]] = {"rams_trans": {"drop_rate": 0.1}, "vit_classifier": {"drop_rate": 0.1}}

ROOT = Path(__file__).resolve().parents[1]


def write_tiny_benchmark(root: Path, num_classes: int = 4, per_class: int = 4, size: int = 32) -> Path:
    from fgvc_core.data.synth import write_benchmark

    write_benchmark(root, num_classes=num_classes, per_class=per_class, size=size, seed=5, progress=False)
    return root


def tiny_config(tmp_path: Path, model: str = "rams_trans", **train: Any) -> dict[str, Any]:
    bench = tmp_path / "bench"
    if not bench.exists():
        write_tiny_benchmark(bench)
    config = {
        "model": dict(TINY_MODELS[model]),
        "data": {"name": "synth_stream", "root": str(bench), "num_classes": 4, "train_samples": 32,
                 "img_size": 32, "seed": 1, "val_samples": 16},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.05, "workers": 0, "output": str(tmp_path / "run"),
                  "log_every": 1, **train},
    }  # fmt: skip
    return merge_defaults(config)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def run_train_cli(config_path: Path, *extra: str, wait: bool = True) -> subprocess.Popen:
    """``python -m train.train --config ...`` in a subprocess (a real process to SIGKILL); waits unless told not."""
    cmd = [sys.executable, "-m", "train.train", "--config", str(config_path), "--no-progress", *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    return proc
