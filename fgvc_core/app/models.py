"""Models load once per process (``st.cache_resource``) and are shared, read-only, by every browser session.

The cache key is the checkpoint path plus its modification time and size, so a checkpoint rewritten by a training
run is loaded afresh. Nothing ever changes a cached model after loading: the core's ``trace``/CAM functions take
their options as arguments, leave no hooks and write no gradients, which is what makes the sharing safe
(``tests/test_trace_threads.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st
import torch
from PIL import Image

import fgvc_core
from fgvc_core.errors import CheckpointError


@dataclass(frozen=True)
class LoadedModel:
    """A loaded checkpoint: the shared model and what the pages need beside it.

    Attributes:
        model: the model in eval mode (never mutate it: other sessions use it too).
        meta: the sidecar.
        path: the ``.safetensors`` file.
        key: identifies this file version in per-session caches.
        transform: the checkpoint's test-time preprocessing (PIL -> normalised tensor).
    """

    model: Any = field(repr=False)
    meta: dict[str, Any] = field(repr=False)
    path: Path
    key: str
    transform: Callable[[Image.Image], torch.Tensor] = field(repr=False)

    @property
    def kind(self) -> str:
        return self.model.model_name

    @property
    def classes(self) -> list[str]:
        names = list(self.meta.get("classes") or [])
        return names if len(names) == self.model.num_classes else [f"class {k}" for k in range(self.model.num_classes)]

    @property
    def preprocess(self) -> dict[str, Any]:
        return dict(self.meta["preprocess"])

    def input_tensor(self, image: Image.Image) -> torch.Tensor:
        """The network input ``(1, 3, H, W)`` for one image."""
        return self.transform(image).unsqueeze(0)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    return stat.st_mtime_ns, stat.st_size


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def _load(path: str, stamp: tuple[int, int]) -> tuple[Any, dict[str, Any]]:
    model, meta = fgvc_core.load_checkpoint(path)
    if "preprocess" not in meta:
        raise CheckpointError(f"{Path(path).name} has no preprocessing in its sidecar; it cannot take images")
    return model, meta


def load_model(path: str | Path) -> LoadedModel:
    """The shared model of ``path`` (loaded on first use).

    Raises:
        CheckpointError: the file or its sidecar cannot be read, or the weights do not fit the architecture.
    """
    path = Path(path)
    stamp = _stamp(path)
    model, meta = _load(str(path), stamp)
    transform = fgvc_core.build_transform(meta)
    return LoadedModel(model, meta, path, f"{path}@{stamp[0]}:{stamp[1]}", transform)


def metric_summary(meta: Mapping[str, Any]) -> dict[str, float]:
    """Top-1 accuracies in the sidecar's metrics, by head (``combined``, ``scale1``, ``stage3``…)."""
    metrics = meta.get("metrics") or {}
    return {
        key[: -len("_top1")]: float(value)
        for key, value in metrics.items()
        if key.endswith("_top1") and isinstance(value, (int, float))
    }
