"""Explanation metrics: do the maps and crops point at the parts that decide the class?

Pure functions on maps and boxes, no model code: pointing game, part energy, crop recall, their baselines and
summaries. The perturbation metrics that call a model (`deletion_insertion_auc`, `road_scores`) live in
`fgvc_core.explain.scoring.perturbation`. Inputs are numpy arrays or torch tensors, results
numpy arrays, one value per image. ``docs/explanation_metrics.md`` says how to read each number against its
baseline.

Conventions, shared by every function here:

- **Frame.** Boxes live in one pixel frame of size ``image_size = (H, W)`` (an int means a square), in continuous
  pixel-edge coordinates: pixel ``(row i, col j)`` covers ``[j, j+1) x [i, i+1)`` and its centre is
  ``(j + 0.5, i + 0.5)``; the DPPM boxes use the same convention. Convert dataset boxes to the model input first
  (`part_boxes_to_input`). Without ``image_size`` the frame is the map's own grid.
- **Part boxes** are ``(x, y, w, h)``: a ``(B, D, 4)`` array or a length-B sequence of ``(D_i, 4)`` arrays. Rows
  with ``w <= 0``, ``h <= 0`` or NaN are padding and ignored; an image left with no box is an error (filter with
  `has_part_boxes`). Crop boxes are ``(x0, y0, x1, y1)`` (the names say ``xyxy``).
- **Inside.** A pixel is inside a box when its centre lies in the closed box; a point is inside when it lies in
  the closed box. Union masks are rasterised with that rule, so overlapping boxes are never counted twice.
- **Maps** are ``(B, h, w)`` or ``(h, w)``. A map coarser than the frame is upsampled to it (``upsample``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fgvc_core.errors import ConfigError
from fgvc_core.explain.scoring.maps import ArrayLike, as_maps, to_frame

ImageSize = int | tuple[int, int]

POINTING_UPSAMPLES = ("bilinear", "cell_centre")
ENERGY_UPSAMPLES = ("bilinear", "nearest")


# ----------------------------------------------------------------------------------------------- inputs
def _size_hw(image_size: ImageSize) -> tuple[int, int]:
    hw = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(hw) != 2 or any(isinstance(v, bool) or int(v) != v or v <= 0 for v in hw):
        raise ConfigError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return int(hw[0]), int(hw[1])


def _valid_rows(boxes: Any) -> np.ndarray:
    b = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64)
    b = b.reshape(-1, 4) if b.size else np.zeros((0, 4))
    ok = np.isfinite(b).all(axis=1) & (b[:, 2] > 0) & (b[:, 3] > 0)
    return b[ok]


def _as_part_boxes(part_boxes: ArrayLike, batch: int | None = None, require: bool = True) -> list[np.ndarray]:
    """A list of ``(D_i, 4)`` float64 arrays of the valid xywh boxes of each image."""
    if isinstance(part_boxes, torch.Tensor) or isinstance(part_boxes, np.ndarray):
        if part_boxes.ndim == 2:
            part_boxes = part_boxes[None]
        if part_boxes.ndim != 3 or part_boxes.shape[-1] != 4:
            raise ConfigError(f"part_boxes must be (B, D, 4) or (D, 4), got shape {tuple(part_boxes.shape)}")
    per_image = [_valid_rows(b) for b in part_boxes]
    if batch is not None and len(per_image) != batch:
        raise ConfigError(f"part_boxes has {len(per_image)} images for {batch} maps")
    empty = [i for i, b in enumerate(per_image) if len(b) == 0]
    if require and empty:
        raise ConfigError(f"{len(empty)} image(s) have no part box (first: {empty[0]}); drop them with has_part_boxes")
    return per_image


def _as_xyxy(boxes: ArrayLike) -> np.ndarray:
    b = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64)
    b = b[None] if b.ndim == 1 else b
    if b.ndim != 2 or b.shape[1] != 4:
        raise ConfigError(f"crop boxes must be (B, 4) xyxy, got shape {b.shape}")
    return b


def has_part_boxes(part_boxes: ArrayLike) -> np.ndarray:
    """``(B,)`` bool: which images have at least one valid part box (the others cannot be scored)."""
    return np.array([len(b) > 0 for b in _as_part_boxes(part_boxes, require=False)], dtype=bool)


# ------------------------------------------------------------------------------------------ box geometry
def box_union_mask(boxes_xywh: ArrayLike, image_size: ImageSize) -> np.ndarray:
    """``(H, W)`` bool mask of the pixels whose centre lies in at least one of the closed boxes."""
    h, w = _size_hw(image_size)
    cx, cy = np.arange(w) + 0.5, np.arange(h) + 0.5
    mask = np.zeros((h, w), dtype=bool)
    for x, y, bw, bh in _valid_rows(boxes_xywh):
        mask |= ((cy >= y) & (cy <= y + bh))[:, None] & ((cx >= x) & (cx <= x + bw))[None, :]
    return mask


def union_area_fraction(part_boxes: ArrayLike, image_size: ImageSize) -> np.ndarray:
    """``(B,)``: exact area of the union of each image's boxes, clipped to the frame, over the frame area.

    Computed by coordinate compression (exact for axis-aligned rectangles), not on the pixel raster.
    """
    h, w = _size_hw(image_size)
    out = []
    for boxes in _as_part_boxes(part_boxes):
        x0, y0 = np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h)
        x1, y1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w), np.clip(boxes[:, 1] + boxes[:, 3], 0, h)
        xs, ys = np.unique(np.r_[x0, x1]), np.unique(np.r_[y0, y1])
        mx, my = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2  # cell midpoints
        inx = (mx[None, :] > x0[:, None]) & (mx[None, :] < x1[:, None])  # (D, cells_x)
        iny = (my[None, :] > y0[:, None]) & (my[None, :] < y1[:, None])
        covered = (iny[:, :, None] & inx[:, None, :]).any(axis=0)  # (cells_y, cells_x)
        out.append(float((np.diff(ys)[:, None] * np.diff(xs)[None, :] * covered).sum()) / (h * w))
    return np.array(out, dtype=np.float64)


def _point_hits(points_xy: np.ndarray, boxes: np.ndarray, tolerance: float) -> np.ndarray:
    """``(N,)`` bool: Euclidean distance from each point to the nearest closed box is at most ``tolerance``."""
    px, py = points_xy[:, :1], points_xy[:, 1:]
    dx = np.maximum(np.maximum(boxes[None, :, 0] - px, px - (boxes[None, :, 0] + boxes[None, :, 2])), 0)
    dy = np.maximum(np.maximum(boxes[None, :, 1] - py, py - (boxes[None, :, 1] + boxes[None, :, 3])), 0)
    return (np.hypot(dx, dy) <= tolerance).any(axis=1)


def _check_tolerance(tolerance: float) -> float:
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ConfigError(f"tolerance must be a finite number >= 0 pixels, got {tolerance!r}")
    return float(tolerance)


# --------------------------------------------------------------------------------------------- pointing
def peak_points(maps: ArrayLike, image_size: ImageSize | None = None, upsample: str = "bilinear") -> np.ndarray:
    """``(B, 2)`` ``(x, y)`` of each map's arg-max in the frame, as used by `pointing_game`.

    Ties go to the first maximum in row-major order (``torch.argmax`` on the flattened map).

    Args:
        maps: ``(B, h, w)`` or ``(h, w)``.
        image_size: ``(H, W)`` of the frame; default the map's own size.
        upsample: When the map is coarser than the frame: ``"bilinear"`` (default) upsamples it
            (``F.interpolate``, ``align_corners=False``) and takes the centre of the peak pixel;
            ``"cell_centre"`` takes the peak cell on the map's grid and maps its centre to the frame.
    """
    if upsample not in POINTING_UPSAMPLES:
        raise ConfigError(f"upsample must be one of {POINTING_UPSAMPLES}, got {upsample!r}")
    m = as_maps(maps)
    size = tuple(m.shape[1:]) if image_size is None else _size_hw(image_size)
    if upsample == "bilinear":
        m = to_frame(m, size, "bilinear")
    gh, gw = m.shape[1:]
    flat = m.reshape(len(m), -1).argmax(dim=1).numpy()
    rows, cols = flat // gw, flat % gw
    return np.stack([(cols + 0.5) * size[1] / gw, (rows + 0.5) * size[0] / gh], axis=1)


def pointing_game(
    maps: ArrayLike,
    part_boxes: ArrayLike,
    image_size: ImageSize | None = None,
    tolerance: float = 0.0,
    upsample: str = "bilinear",
) -> np.ndarray:
    """``(B,)`` bool: the map's peak (`peak_points`) falls inside ANY of that image's deciding part boxes.

    A hit when the Euclidean distance from the peak to the closed box is ``<= tolerance`` pixels. Zhang et al.
    (Excitation Backprop, 2016) used 15 px at ~224 px; our default 0 asks for the peak to be inside a part, which
    is strict enough for the small synth parts. Report the tolerance with the number.
    """
    m = as_maps(maps)
    boxes = _as_part_boxes(part_boxes, len(m))
    points = peak_points(m, image_size, upsample)
    tol = _check_tolerance(tolerance)
    return np.array([_point_hits(p[None], b, tol)[0] for p, b in zip(points, boxes)], dtype=bool)


def part_energy(
    maps: ArrayLike, part_boxes: ArrayLike, image_size: ImageSize | None = None, upsample: str = "bilinear"
) -> np.ndarray:
    """``(B,)``: fraction of the map's mass inside the union of that image's part boxes.

    ``energy = sum(m * U) / sum(m)`` with ``U`` = `box_union_mask` and ``m`` the map in the frame with negative
    values clipped to 0 (CAMs are ReLU'd; negative evidence is no "mass"). A map with no mass gives NaN
    (`summarize` skips NaN and reports how many were used). ``upsample``: ``"bilinear"`` (default) or
    ``"nearest"`` (pixel-centre rule, each pixel takes the value of the cell it lies in).
    """
    if upsample not in ENERGY_UPSAMPLES:
        raise ConfigError(f"upsample must be one of {ENERGY_UPSAMPLES}, got {upsample!r}")
    m = as_maps(maps)
    boxes = _as_part_boxes(part_boxes, len(m))
    size = tuple(m.shape[1:]) if image_size is None else _size_hw(image_size)
    m = to_frame(m, size, upsample).clamp_min(0).numpy()
    out = np.full(len(m), np.nan)
    for i, (mi, bi) in enumerate(zip(m, boxes)):
        total = mi.sum()
        if total > 0:
            out[i] = mi[box_union_mask(bi, size)].sum() / total
    return out


# -------------------------------------------------------------------------------------------- baselines
def center_point_baseline(image_size: ImageSize, part_boxes: ArrayLike, tolerance: float = 0.0) -> np.ndarray:
    """``(B,)`` bool: the pointing game of a map that peaks at the frame centre ``(W/2, H/2)``."""
    h, w = _size_hw(image_size)
    tol = _check_tolerance(tolerance)
    centre = np.array([[w / 2, h / 2]])
    return np.array([_point_hits(centre, b, tol)[0] for b in _as_part_boxes(part_boxes)], dtype=bool)


def random_point_baseline(
    image_size: ImageSize, part_boxes: ArrayLike, n: int | None = None, seed: int = 0, tolerance: float = 0.0
) -> np.ndarray:
    """``(B,)``: expected pointing-game hit rate of a point drawn uniformly in the frame.

    With ``n=None`` (default) the exact value: the union area fraction (`union_area_fraction`), which needs
    ``tolerance=0``. With ``n`` points (``numpy`` generator seeded by ``seed``) a Monte-Carlo estimate, whose
    standard error is ``sqrt(p (1 - p) / n)``; it also handles ``tolerance > 0``.
    """
    tol = _check_tolerance(tolerance)
    if n is None:
        if tol > 0:
            raise ConfigError("the exact random baseline needs tolerance=0; pass n= for a sampled estimate")
        return union_area_fraction(part_boxes, image_size)
    if n < 1:
        raise ConfigError(f"n must be >= 1 sample, got {n}")
    h, w = _size_hw(image_size)
    rng = np.random.default_rng(seed)
    out = []
    for boxes in _as_part_boxes(part_boxes):
        points = rng.uniform(0.0, 1.0, size=(n, 2)) * np.array([w, h])
        out.append(_point_hits(points, boxes, tol).mean())
    return np.array(out, dtype=np.float64)


def centre_gaussian_map(image_size: ImageSize, sigma: float = 0.25) -> np.ndarray:
    """``(H, W)`` Gaussian centred on the frame, ``sigma`` a fraction of each side: the centre-bias "map"."""
    h, w = _size_hw(image_size)
    if not sigma > 0:
        raise ConfigError(f"sigma must be > 0 (a fraction of the image side), got {sigma!r}")
    gx = np.exp(-(((np.arange(w) + 0.5 - w / 2) / (sigma * w)) ** 2) / 2)
    gy = np.exp(-(((np.arange(h) + 0.5 - h / 2) / (sigma * h)) ** 2) / 2)
    return gy[:, None] * gx[None, :]


def uniform_energy_baseline(image_size: ImageSize, part_boxes: ArrayLike) -> np.ndarray:
    """``(B,)``: `part_energy` of a constant map = fraction of pixels in the union (its area fraction)."""
    boxes = _as_part_boxes(part_boxes)
    return part_energy(np.ones((len(boxes), *_size_hw(image_size))), boxes)


def gaussian_energy_baseline(image_size: ImageSize, part_boxes: ArrayLike, sigma: float = 0.25) -> np.ndarray:
    """``(B,)``: `part_energy` of `centre_gaussian_map` (what a pure centre bias scores)."""
    boxes = _as_part_boxes(part_boxes)
    return part_energy(
        np.broadcast_to(centre_gaussian_map(image_size, sigma), (len(boxes), *_size_hw(image_size))), boxes
    )


# ------------------------------------------------------------------------------------------------ crops
def crop_recall(crop_boxes_xyxy: ArrayLike, part_boxes: ArrayLike, min_overlap: float = 1.0) -> np.ndarray:
    """``(B,)``: fraction of the image's part boxes that lie inside its crop.

    A part is inside when ``area(part ∩ crop) / area(part) >= min_overlap`` (up to 1e-9). The default 1.0 asks
    for the whole part, so a crop that cuts a part in two does not get it; 0.5 counts a part half inside.
    """
    if not 0 < min_overlap <= 1:
        raise ConfigError(f"min_overlap must be in (0, 1], got {min_overlap!r}")
    crops = _as_xyxy(crop_boxes_xyxy)
    boxes = _as_part_boxes(part_boxes, len(crops))
    out = []
    for (cx0, cy0, cx1, cy1), b in zip(crops, boxes):
        iw = np.clip(np.minimum(b[:, 0] + b[:, 2], cx1) - np.maximum(b[:, 0], cx0), 0, None)
        ih = np.clip(np.minimum(b[:, 1] + b[:, 3], cy1) - np.maximum(b[:, 1], cy0), 0, None)
        out.append(np.mean(iw * ih / (b[:, 2] * b[:, 3]) >= min_overlap - 1e-9))
    return np.array(out, dtype=np.float64)


def crop_area_fraction(crop_boxes_xyxy: ArrayLike, image_size: ImageSize) -> np.ndarray:
    """``(B,)``: area of each crop, clipped to the frame, over the frame area (1.0 = the DPPM fell back)."""
    h, w = _size_hw(image_size)
    c = _as_xyxy(crop_boxes_xyxy)
    cw = np.clip(np.minimum(c[:, 2], w) - np.maximum(c[:, 0], 0), 0, None)
    ch = np.clip(np.minimum(c[:, 3], h) - np.maximum(c[:, 1], 0), 0, None)
    return cw * ch / (h * w)


# ------------------------------------------------------------------------------------ dataset adapters
def part_boxes_to_input(
    boxes_xywh: ArrayLike, original_size: tuple[int, int], preprocess: Mapping[str, Any]
) -> np.ndarray:
    """``(D, 4)`` xywh boxes in original pixels -> xywh on the test input, clipped to it.

    ``original_size`` is ``(W, H)`` as PIL's ``Image.size`` (the convention of
    ``fgvc_core.data.transforms.original_box_to_input``, which does the mapping). A box cut off by the centre
    crop comes back with zero width or height and is then ignored as padding.
    """
    from fgvc_core.data.transforms import original_box_to_input

    out = []
    for x, y, w, h in _valid_rows(boxes_xywh):
        x0, y0, x1, y1 = original_box_to_input((x, y, x + w, y + h), original_size, preprocess)
        out.append((x0, y0, x1 - x0, y1 - y0))
    return np.array(out, dtype=np.float64).reshape(-1, 4)


def keypoint_boxes(keypoints: ArrayLike, half_size: float, indices: Sequence[int] | None = None) -> np.ndarray:
    """``(P', 4)`` xywh squares of side ``2 * half_size`` around the visible keypoints (CUB's ``(P, 3)`` x, y, v).

    CUB has part keypoints, not boxes; this turns the chosen parts (``indices``, default all) into boxes that the
    metrics above can score. Invisible keypoints are left out.
    """
    k = np.asarray(keypoints.detach().cpu() if isinstance(keypoints, torch.Tensor) else keypoints, dtype=np.float64)
    if k.ndim != 2 or k.shape[1] != 3:
        raise ConfigError(f"keypoints must be (P, 3) x, y, visible, got shape {k.shape}")
    if not half_size > 0:
        raise ConfigError(f"half_size must be > 0 pixels, got {half_size!r}")
    k = k if indices is None else k[list(indices)]
    k = k[k[:, 2] > 0]
    return np.stack(
        [k[:, 0] - half_size, k[:, 1] - half_size, np.full(len(k), 2.0 * half_size), np.full(len(k), 2.0 * half_size)],
        axis=1,
    )


# ------------------------------------------------------------------------------------------ summaries
def score_maps(
    maps: ArrayLike,
    part_boxes: ArrayLike,
    image_size: ImageSize | None = None,
    tolerance: float = 0.0,
    upsample: str = "bilinear",
    sigma: float = 0.25,
) -> dict[str, np.ndarray]:
    """Pointing game and part energy of the maps, with their baselines on the same boxes, per image.

    Keys: ``pointing``, ``pointing_centre``, ``pointing_random`` (exact; sampled with 10,000 points, seed 0,
    when ``tolerance > 0``), ``energy``, ``energy_uniform``, ``energy_gaussian`` (``sigma``). ``upsample`` is
    the pointing game's; part energy uses ``"bilinear"`` with it and ``"nearest"`` with ``"cell_centre"``.
    """
    m = as_maps(maps)
    boxes = _as_part_boxes(part_boxes, len(m))
    size = tuple(m.shape[1:]) if image_size is None else _size_hw(image_size)
    n = None if tolerance == 0 else 10_000
    return {
        "pointing": pointing_game(m, boxes, size, tolerance, upsample).astype(np.float64),
        "pointing_centre": center_point_baseline(size, boxes, tolerance).astype(np.float64),
        "pointing_random": random_point_baseline(size, boxes, n=n, tolerance=tolerance),
        "energy": part_energy(m, boxes, size, "bilinear" if upsample == "bilinear" else "nearest"),
        "energy_uniform": uniform_energy_baseline(size, boxes),
        "energy_gaussian": gaussian_energy_baseline(size, boxes, sigma),
    }


def summarize(
    ours: ArrayLike, baselines: Mapping[str, ArrayLike] | None = None, name: str = "ours"
) -> dict[str, dict[str, float]]:
    """Mean, standard error and count per row (``ours`` first, then each baseline); NaN values are skipped.

    Booleans (pointing hits) are averaged as 0/1, so the mean is the hit rate.
    """
    out: dict[str, dict[str, float]] = {}
    for key, values in {name: ours, **dict(baselines or {})}.items():
        v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
        v = v.ravel()[~np.isnan(v.ravel())]
        n = len(v)
        out[key] = {
            "mean": float(v.mean()) if n else math.nan,
            "sem": float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
            "n": n,
        }
    return out


def summarize_scores(scores: Mapping[str, np.ndarray]) -> dict[str, dict[str, dict[str, float]]]:
    """`score_maps` output -> ``{"pointing game": ours/centre/random rows, "part energy": ours/uniform/gaussian}``."""
    return {
        "pointing game": summarize(
            scores["pointing"], {"centre": scores["pointing_centre"], "random": scores["pointing_random"]}
        ),
        "part energy": summarize(
            scores["energy"], {"uniform": scores["energy_uniform"], "gaussian": scores["energy_gaussian"]}
        ),
    }


def format_summary(summary: Mapping[str, Mapping[str, float]], title: str) -> str:
    """A small text table of a `summarize` result (the CLI prints it; nothing here prints)."""
    lines = [title]
    for key, row in summary.items():
        lines.append(f"  {key:<18} {row['mean']:.3f} ± {row['sem']:.3f}  (n={row['n']})")
    return "\n".join(lines)
