"""The δ sweep of the Tune page: accuracy and explanation metrics of ONE trained CRA-SMRA model against δ.

This is a test-time sweep, not the paper's Table 4 (which compares models trained with each δ); δ ≤ 1/e suppresses
every channel of every image (``fgvc_core.models.cra_smra.trace.ALL_SUPPRESSED_DELTA``).

δ is a test-time option (the suppressed map feeds the next stage), so one trained model can be swept without
retraining. Per batch of benchmark images, stages 1-3 run once (their output does not depend on δ) and every δ
reruns stages 4-5 from that cache; the stage CAMs (one forward and one backward per δ) are scored against the
deciding part boxes with the same metrics as ``train.evaluate``: pointing game and part energy, with the centre
baseline beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fgvc_core.errors import ConfigError
from fgvc_core.explain.attribution.cam import CAM_STAGES, stage_cams
from fgvc_core.explain.scoring import metrics
from fgvc_core.explain.scoring.evaluation import benchmark_batches, sample_indices


@dataclass(frozen=True)
class DeltaSweep:
    """Per δ, the mean of every metric over the swept images.

    Attributes:
        deltas: the swept values, in the order given.
        metrics: ``{name: [value per δ]}``; names are ``top-1 combined``, ``top-1 <head>``,
            ``pointing stage s``, ``part energy stage s``, ``pointing centre baseline`` and
            ``suppressed channels``.
        images: how many images were used (the part-box metrics use those with deciding parts, ``scored``).
        scored: images with at least one deciding part box in the input.
        cam_method: the CAM method of the explanation metrics.
    """

    deltas: list[float]
    metrics: dict[str, list[float]]
    images: int
    scored: int
    cam_method: str

    def rows(self) -> list[dict[str, Any]]:
        """One table row per δ."""
        return [
            {"δ": d, **{name: values[i] for name, values in self.metrics.items()}} for i, d in enumerate(self.deltas)
        ]


def delta_grid(low: float, high: float, step: float) -> list[float]:
    """``low, low + step, …`` up to ``high`` inclusive, rounded to 4 decimals (0.1 steps do not drift to 0.30000004)."""
    return [float(d) for d in np.round(np.arange(low, high + 1e-9, step), 4)]


def delta_sweep(
    model: Any,
    dataset: Any,
    preprocess: dict[str, Any],
    deltas: Sequence[float],
    limit: int = 24,
    batch_size: int = 8,
    cam_method: str = "gradcam",
    progress: Callable[[float], None] | None = None,
) -> DeltaSweep:
    """Sweep δ over ``limit`` benchmark images.

    Args:
        model: a CRA-SMRA model with CRAM, in eval mode (not altered).
        dataset: a dataset without transform whose ``annotation(i)`` has the deciding part boxes (the benchmark).
        preprocess: the checkpoint's preprocessing.
        deltas: the δ values, each in (0, 1].
        limit: images used (evenly spaced over the dataset).
        batch_size: images per forward.
        cam_method: pytorch-grad-cam method of the maps that are scored (target: the combined prediction).
        progress: called with the fraction done after every (batch, δ).

    Raises:
        ConfigError: no δ, a model without CRAM, or a dataset without part annotations.
    """
    if not deltas:
        raise ConfigError("choose at least one δ to sweep")
    if not getattr(model, "uses_cram", False):
        raise ConfigError("the δ sweep needs a CRA-SMRA model with CRAM (variant cram or cram_smram)")
    size = int(preprocess["img_size"])
    order = sample_indices(len(dataset), max(1, int(limit)))
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}

    def add(name: str, d: int, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[~np.isnan(values)]
        sums.setdefault(name, np.zeros(len(deltas)))[d] += values.sum()
        counts.setdefault(name, np.zeros(len(deltas)))[d] += len(values)

    scored = 0
    total = -(-len(order) // batch_size)
    for b, batch in enumerate(benchmark_batches(dataset, preprocess, order, batch_size)):
        x, y, keep = batch.x, batch.labels, batch.keep
        kept_parts = [p for p, k in zip(batch.parts, keep) if k]
        scored += int(keep.sum())
        base = model.trace(x)
        for d, delta in enumerate(deltas):
            trace = model.trace(x, delta=float(delta), cache=base.cache)
            add("top-1 combined", d, (trace.probs.argmax(1) == y).numpy())
            for head, probs in trace.head_probs.items():
                add(f"top-1 {head}", d, (probs.argmax(1) == y).numpy())
            suppressed = [s.suppressed_channels.float().mean(1).numpy() for s in trace.stages]
            add("suppressed channels", d, np.mean(suppressed, axis=0))
            if kept_parts:
                cams = stage_cams(model, x, method=cam_method, delta=float(delta))
                for stage in CAM_STAGES:
                    scores = metrics.score_maps(cams[stage][keep], kept_parts, (size, size))
                    add(f"pointing stage {stage}", d, scores["pointing"])
                    add(f"part energy stage {stage}", d, scores["energy"])
                    if stage == CAM_STAGES[-1]:
                        add("pointing centre baseline", d, scores["pointing_centre"])
            if progress is not None:
                progress((b * len(deltas) + d + 1) / (total * len(deltas)))
    means = {name: [float(s / c) if c else float("nan") for s, c in zip(sums[name], counts[name])] for name in sums}
    return DeltaSweep([float(d) for d in deltas], means, len(order), scored, cam_method)
