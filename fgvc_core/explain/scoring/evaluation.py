"""Score a trained model's explanations against ground-truth parts (the generated benchmark, or CUB keypoints).

For each test image this computes the model's main explanation map and compares it with the deciding part boxes:
- RAMS-Trans: the scale-1 attention rollout, and the DPPM scale-2 crop (recall of the parts, crop area);
- CRA-SMRA: the stage-5 Grad-CAM (pytorch-grad-cam through ``explain.attribution.cam.stage_cams``).
It also measures what the model *needs*: accuracy with the deciding parts occluded, with equal-sized background
patches occluded, and on a blurred copy (the part cue is fine-grained, so a blurred image should do much worse).
Every number comes with its baseline (centre point, random point, uniform map, chance).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from tqdm import tqdm

from fgvc_core.data.transforms import build_transform
from fgvc_core.errors import ConfigError
from fgvc_core.explain.scoring import metrics
from fgvc_core.explain.scoring.occlusion import background_patches, occlude_boxes


def ground_truth_boxes(dataset: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(deciding part boxes (D, 4), object box (4,)) in the dataset's original pixels, xywh.

    The generated benchmark names its deciding parts; for CUB every visible part keypoint counts, as a square of
    side 16% of the object box's shorter side (CUB has no part boxes).
    """
    if not hasattr(dataset, "annotation"):
        raise ConfigError("explanation metrics need part annotations (the synth benchmark or CUB)")
    ann = dataset.annotation(index)
    obj = np.asarray(ann.box, dtype=np.float64)
    if hasattr(ann, "deciding_boxes"):
        return ann.deciding_boxes.numpy().astype(np.float64), obj
    if getattr(ann, "parts", None) is None:
        raise ConfigError("explanation metrics need part annotations (the synth benchmark or CUB)")
    return metrics.keypoint_boxes(ann.parts, half_size=0.08 * min(obj[2], obj[3])), obj


def sample_indices(size: int, limit: int | None = None) -> list[int]:
    """``limit`` evenly spaced indices of ``range(size)`` (datasets are often sorted by class), or all of them."""
    if limit is None or limit >= size:
        return list(range(size))
    return np.linspace(0, size - 1, limit).round().astype(int).tolist()


@dataclass(frozen=True)
class BenchmarkBatch:
    """Benchmark images as the network sees them, with their ground truth in network-input pixels (xywh).

    Attributes:
        start: position of the batch's first image in the sampled order.
        x: (B, C, H, W) the transformed images.
        labels: (B,) their classes.
        parts: per image, the deciding part boxes (D, 4).
        objects: (B, 4) the object boxes.
        keep: bool (B,), the images with a part box inside the input (the part-box metrics score only those).
    """

    start: int
    x: torch.Tensor
    labels: torch.Tensor
    parts: list[np.ndarray]
    objects: np.ndarray
    keep: np.ndarray


def benchmark_batches(
    dataset: Any, preprocess: dict[str, Any], order: Sequence[int], batch_size: int
) -> Iterator[BenchmarkBatch]:
    """The images ``order`` of ``dataset`` (built without a transform) in batches, with the checkpoint's preprocess."""
    transform = build_transform(preprocess)
    for start in range(0, len(order), batch_size):
        images, labels, parts, objects = [], [], [], []
        for i in order[start : start + batch_size]:
            image, label = dataset[i]
            part_boxes, obj = ground_truth_boxes(dataset, i)
            images.append(transform(image))
            labels.append(label)
            parts.append(metrics.part_boxes_to_input(part_boxes, image.size, preprocess))
            objects.append(metrics.part_boxes_to_input(obj[None], image.size, preprocess)[0])
        keep = metrics.has_part_boxes(parts)
        yield BenchmarkBatch(start, torch.stack(images), torch.tensor(labels), parts, np.stack(objects), keep)


def rollout_maps(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None, str]:
    """RAMS-Trans: the scale-1 attention rollout and, with a second scale, the DPPM crop boxes."""
    trace = model.trace(x)
    crops = trace.scales[1].box.numpy() if len(trace.scales) > 1 else None
    return trace.scales[0].rollout.numpy(), crops, "attention rollout (scale 1)"


def stage5_gradcam_maps(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None, str]:
    """CRA-SMRA: the stage-5 Grad-CAM of the predicted class (no crops)."""
    from fgvc_core.explain.attribution.cam import stage_cams

    return stage_cams(model, x, stages=(5,))[5], None, "Grad-CAM (stage 5)"


def default_maps(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Any model: every image's ``trace.default_map()`` (gradient-free), no crops."""
    trace = model.trace(x)
    maps = [trace.default_map(row) for row in range(x.shape[0])]
    return torch.stack([m.map for m in maps]).numpy(), None, maps[0].name


def explanation_maps(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(maps (B, h, w), crop boxes xyxy (B, 4) in input pixels or None, a name for the map).

    Which map: the model spec's ``evaluation_maps`` (``fgvc_core.models.registry``), else :func:`default_maps`.
    """
    from fgvc_core.models.registry import get_spec, resolve

    target = get_spec(model.model_name).evaluation_maps
    return (default_maps if target is None else resolve(target))(model, x)


def _accuracy(probs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return (probs.argmax(1) == labels).numpy().astype(np.float64)


def evaluate_explanations(
    model: torch.nn.Module,
    dataset: Any,
    preprocess: dict[str, Any],
    batch_size: int = 16,
    limit: int | None = None,
    blur_sigma: float = 3.0,
    deletion_images: int = 32,
    seed: int = 0,
    progress: Callable | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """All explanation metrics for ``dataset`` (built without a transform; ``preprocess`` from the checkpoint).

    Returns a JSON-able dict of summaries (mean, sem, n per row) keyed by metric.
    """
    from fgvc_core.explain.scoring.perturbation import deletion_insertion_auc

    size = preprocess["img_size"]
    frame = (size, size)
    order = sample_indices(len(dataset), limit)
    n = len(order)
    per_image: dict[str, list[np.ndarray]] = {}
    map_name = ""
    deletion: list[dict[str, np.ndarray]] = []

    def add(key: str, values: np.ndarray) -> None:
        per_image.setdefault(key, []).append(np.asarray(values, dtype=np.float64))

    batches = benchmark_batches(dataset, preprocess, order, batch_size)
    total = -(-n // batch_size)
    for batch in tqdm(batches, total=total, desc="explain metrics", disable=not show_progress, leave=False):
        start, x, y, parts, keep = batch.start, batch.x, batch.labels, batch.parts, batch.keep
        maps, crops, map_name = explanation_maps(model, x)
        scores = metrics.score_maps(maps[keep], [p for p, k in zip(parts, keep) if k], frame)
        for key, values in scores.items():
            add(key, values)
        if crops is not None:
            kept_parts = [p for p, k in zip(parts, keep) if k]
            add("crop_recall", metrics.crop_recall(crops[keep], kept_parts))
            add("crop_area", metrics.crop_area_fraction(crops, frame))

        with torch.no_grad():
            add("acc_clean", _accuracy(model.predict(x), y))
            add("acc_parts_occluded", _accuracy(model.predict(occlude_boxes(x, parts)), y))
            patches = background_patches(parts, batch.objects, frame, seed=seed + start)
            add("acc_background_occluded", _accuracy(model.predict(occlude_boxes(x, patches)), y))
            hidden = [p[:, 2:].prod(1).sum() for p in parts]
            placed = [q[:, 2:].prod(1).sum() if len(q) else 0.0 for q in patches]
            add("background_area_ratio", np.array(placed) / np.maximum(np.array(hidden), 1e-9))
            blurred = TF.gaussian_blur(x, kernel_size=2 * int(3 * blur_sigma) + 1, sigma=blur_sigma)
            add("acc_blurred", _accuracy(model.predict(blurred), y))
        if sum(len(d["deletion_auc"]) for d in deletion) < deletion_images:
            deletion.append(deletion_insertion_auc(model.predict, x, torch.as_tensor(maps), y.tolist(), steps=10))
        if progress is not None:
            progress(min(n, start + batch_size) / n)

    cat = {k: np.concatenate(v) for k, v in per_image.items()}
    chance = 1.0 / model.num_classes
    report: dict[str, Any] = {"images": n, "map": map_name, "chance": chance, **metrics.summarize_scores(cat)}
    if "crop_recall" in cat:
        report["dppm crop"] = metrics.summarize(cat["crop_recall"], {"area fraction": cat["crop_area"]}, "recall")
    report["occlusion accuracy"] = metrics.summarize(
        cat["acc_clean"],
        {
            "parts hidden": cat["acc_parts_occluded"],
            "background hidden": cat["acc_background_occluded"],
            f"blurred s={blur_sigma:g}": cat["acc_blurred"],
            "bg/part area": cat["background_area_ratio"],
        },
        "clean",
    )
    if deletion:
        report["deletion/insertion AUC"] = metrics.summarize(
            np.concatenate([d["deletion_auc"] for d in deletion]),
            {"insertion": np.concatenate([d["insertion_auc"] for d in deletion])},
            "deletion",
        )
    return report
