"""Occlusion checks on the generated benchmark: does the model need the deciding parts, and only them?

Two perturbations of a normalised input batch, both filling boxes with the normalised value 0 (the dataset mean
colour, so the filled region carries no colour cue):
- ``occlude_boxes``: fill the deciding part boxes;
- ``background_patches``: for each image, boxes of the same sizes placed at random where they overlap neither the
  object box nor each other, so the same area is hidden, but only background.
"""

from __future__ import annotations

import numpy as np
import torch

from fgvc_core.errors import ConfigError


def _pixel_slices(box_xywh: np.ndarray, height: int, width: int) -> tuple[slice, slice]:
    """Pixels whose centre lies in the closed box (the explanation metrics' rule)."""
    x, y, w, h = (float(v) for v in box_xywh)
    x0, x1 = int(np.ceil(x - 0.5)), int(np.floor(x + w - 0.5)) + 1
    y0, y1 = int(np.ceil(y - 0.5)), int(np.floor(y + h - 0.5)) + 1
    return slice(max(0, y0), min(height, y1)), slice(max(0, x0), min(width, x1))


def occlude_boxes(images: torch.Tensor, boxes: list[np.ndarray], value: float = 0.0) -> torch.Tensor:
    """Copy of ``images`` (B,C,H,W) with each image's boxes (D_i, 4; xywh, input pixels) filled with ``value``."""
    if len(boxes) != images.shape[0]:
        raise ConfigError(f"need one box list per image: {len(boxes)} lists for {images.shape[0]} images")
    out = images.clone()
    height, width = images.shape[-2:]
    for i, image_boxes in enumerate(boxes):
        for box in np.asarray(image_boxes, dtype=np.float64).reshape(-1, 4):
            rows, cols = _pixel_slices(box, height, width)
            out[i, :, rows, cols] = value
    return out


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def background_patches(
    part_boxes: list[np.ndarray],
    object_boxes: np.ndarray,
    image_size: tuple[int, int],
    seed: int = 0,
    tries: int = 200,
) -> list[np.ndarray]:
    """Per image, boxes of the part boxes' sizes at random background positions (xywh, same frame).

    A box that cannot be placed off the object after ``tries`` draws is dropped for that image, and the caller
    sees fewer boxes (reported by the evaluation as the hidden-area ratio), never a patch on the object.
    """
    height, width = image_size
    rng = np.random.default_rng(seed)
    placed_all = []
    for image_boxes, obj in zip(part_boxes, np.asarray(object_boxes, dtype=np.float64).reshape(-1, 4)):
        placed: list[np.ndarray] = []
        for box in np.asarray(image_boxes, dtype=np.float64).reshape(-1, 4):
            w, h = box[2], box[3]
            for _ in range(tries):
                cand = np.array([rng.uniform(0, max(width - w, 0)), rng.uniform(0, max(height - h, 0)), w, h])
                if not _overlaps(cand, obj) and not any(_overlaps(cand, p) for p in placed):
                    placed.append(cand)
                    break
        placed_all.append(np.array(placed).reshape(-1, 4))
    return placed_all
