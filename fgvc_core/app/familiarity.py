"""The out-of-distribution check of an upload: a max-softmax threshold per checkpoint, from its sidecar or
calibrated once on the checkpoint's own held-out data and kept on disk beside the evaluation cache.

The sidecar may hold ``{"ood": {"max_softmax_threshold": t, ...}}`` (a trainer could write it; ours does not yet).
Without it the threshold is the 5th percentile of the max-softmax of the images of the checkpoint's test split
(``fgvc_core.explain.scoring.ood``), computed the first time an upload needs it (at most ``CALIBRATION_LIMIT`` images,
evenly spaced, so a CUB-sized split takes seconds, not minutes) and stored as ``ood_<key>.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from fgvc_core.app.datasets import DATASET_TITLES, checkpoint_dataset, choose_dataset, open_dataset
from fgvc_core.app.evaluation_cache import cache_dir, cache_key, checkpoint_sha256, evaluate
from fgvc_core.app.images import ImageChoice
from fgvc_core.app.models import LoadedModel
from fgvc_core.app.settings import AppPaths
from fgvc_core.errors import FGVCError
from fgvc_core.explain.scoring import ood

CALIBRATION_LIMIT = 256
VERSION = 1


@dataclass(frozen=True)
class Threshold:
    """A checkpoint's max-softmax threshold and where it came from (for the caption)."""

    value: float
    source: str
    dataset: str


class _Subset:
    """Evenly spaced items of a dataset, with the interface ``evaluate`` reads (``load``, ``samples``, ``classes``)."""

    def __init__(self, dataset: Any, limit: int) -> None:
        n = len(dataset)
        self.indices = list(range(n)) if n <= limit else np.linspace(0, n - 1, limit).round().astype(int).tolist()
        self.dataset = dataset
        self.classes = dataset.classes
        self.samples = [dataset.samples[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, i: int) -> Any:
        return self.dataset.load(self.indices[i])


def dataset_title(meta: dict[str, Any]) -> str:
    data = meta.get("dataset") or {}
    trained = checkpoint_dataset(meta)
    name = trained[0] if trained else data.get("name") or "its training data"
    return DATASET_TITLES.get(name, name)


def _sidecar_threshold(meta: dict[str, Any]) -> float | None:
    value = (meta.get("ood") or {}).get("max_softmax_threshold")
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(data, handle)
    os.replace(handle.name, path)


def threshold_for(loaded: LoadedModel, paths: AppPaths) -> Threshold | None:
    """The checkpoint's threshold, or None when it has none and its held-out data cannot be read here.

    Raises nothing for missing data: an operator who keeps the data elsewhere still gets predictions.
    """
    title = dataset_title(loaded.meta)
    stored = _sidecar_threshold(loaded.meta)
    if stored is not None:
        return Threshold(stored, "threshold from the checkpoint's sidecar", title)
    trained = checkpoint_dataset(loaded.meta)
    if trained is None:
        return None
    try:
        choice = choose_dataset(*trained)  # confined to the data roots like any typed root
        path = cache_dir(paths) / f"ood_{cache_key(checkpoint_sha256(loaded.path), choice)}.json"
        try:
            data = json.loads(path.read_text())
            if data.get("version") == VERSION:
                return Threshold(float(data["threshold"]), data["source"], title)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        subset = _Subset(open_dataset(choice), CALIBRATION_LIMIT)
        with st.spinner(f"Calibrating the out-of-distribution threshold on {len(subset)} {choice.split} images…"):
            evaluation = evaluate(loaded.model, loaded.transform, subset, loaded.classes)
        value = ood.calibrate_threshold(evaluation.max_softmax)
    except FGVCError:
        return None
    source = f"5th percentile of {len(evaluation.indices)} {choice.split} images"
    _write(path, {"version": VERSION, "threshold": value, "source": source, "n": len(evaluation.indices)})
    return Threshold(value, source, title)


def familiarity_warning(loaded: LoadedModel, image: ImageChoice, probs: Any, paths: AppPaths) -> None:
    """On an upload whose max-softmax is below the checkpoint's threshold, the issue's visible warning."""
    if not image.key.startswith("upload:"):
        return
    threshold = threshold_for(loaded, paths)
    if threshold is None:
        st.caption("No out-of-distribution threshold: the checkpoint's held-out data is not readable here.")
        return
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if ood.is_unfamiliar(p, threshold.value):
        st.warning(
            ood.unfamiliar_message(len(loaded.classes), threshold.dataset)
            + f" (Its top probability {p.max():.1%} is below {threshold.value:.1%}: {threshold.source}.)",
            icon=":material/help:",
        )
