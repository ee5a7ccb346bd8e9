"""Cluttered backgrounds for the generated benchmark.

The background is drawn from its own seed (``InstanceParams.clutter_seed``) and never sees the class. Its clutter
reuses the crest palette, muted body-like colours and the wing ink, so that no global colour statistic tells the
class: only the parts on the bird do.
"""

from __future__ import annotations

import cv2
import numpy as np

from fgvc_core.data.synth.spec import CREST_COLOURS

_SHIFT = 4  # fractional bits for cv2 drawing: sub-pixel vertex positions
_CREST_PALETTE = np.array(list(CREST_COLOURS.values()), dtype=np.float64)


def clutter_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A clutter colour: a third from the crest palette, the rest muted, dark/light or any colour."""
    kind = rng.random()
    if kind < 0.35:  # part colours also occur off the bird
        rgb = _CREST_PALETTE[rng.integers(len(_CREST_PALETTE))] + rng.uniform(-20, 20, 3)
    elif kind < 0.6:  # body-like muted colours
        grey = rng.uniform(50, 200)
        rgb = grey + rng.uniform(-45, 45, 3)
    elif kind < 0.7:  # wing-ink-like light or very dark
        rgb = np.full(3, rng.choice([25.0, 235.0])) + rng.uniform(-10, 10, 3)
    else:
        rgb = rng.uniform(0, 255, 3)
    return tuple(int(v) for v in np.clip(rgb, 0, 255))


def _poly(centre: np.ndarray, radius: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random star-shaped polygon around ``centre``."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.4, 1.0, n)
    pts = centre + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    return np.round(pts * (1 << _SHIFT)).astype(np.int32)


def render_background(size: int, clutter_seed: int, num_shapes: tuple[int, int] = (8, 22)) -> np.ndarray:
    """Render an RGB uint8 background: smooth colour field, fine grain texture, random shapes, lines and a branch.

    Args:
        size: image side in pixels.
        clutter_seed: seed of this background (an instance draw, independent of the class).
        num_shapes: inclusive range of the number of clutter shapes.
    """
    rng = np.random.default_rng(clutter_seed)
    # Low-frequency colour field: a few random colours on a coarse grid, smoothly upsampled (vectorised, cheap).
    grid = int(rng.integers(2, 6))
    coarse = rng.uniform(30, 225, (grid, grid, 3))
    grey = coarse.mean(axis=2, keepdims=True)
    coarse = (grey + rng.uniform(0.35, 0.8) * (coarse - grey)).astype(np.float32)  # tone down, keep variety
    # cubic to 1/8 size, then linear: smooth like a cubic upsample at a twentieth of its cost
    small = max(grid, size // 8)
    field = cv2.resize(cv2.resize(coarse, (small, small), interpolation=cv2.INTER_CUBIC), (size, size))
    # Fine texture: grain at half resolution, so the background is never a flat colour a model could subtract.
    half = max(1, size // 2)
    grain = rng.normal(0.0, rng.uniform(4, 14), (half, half, 1)).astype(np.float32)
    field += cv2.resize(grain, (size, size), interpolation=cv2.INTER_LINEAR)[..., None]
    img = np.clip(field, 0, 255).astype(np.uint8)

    lo, hi = num_shapes
    for _ in range(int(rng.integers(lo, hi + 1))):
        colour = clutter_colour(rng)
        centre = rng.uniform(-0.05, 1.05, 2) * size
        radius = size * np.exp(rng.uniform(np.log(0.02), np.log(0.16)))
        kind = rng.random()
        if kind < 0.3:  # ellipse
            axes = (int(radius * (1 << _SHIFT)), int(radius * rng.uniform(0.3, 1.0) * (1 << _SHIFT)))
            c = tuple(int(v * (1 << _SHIFT)) for v in centre)
            cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA, _SHIFT)
        elif kind < 0.65:  # polygon
            pts = _poly(centre, radius, int(rng.integers(3, 7)), rng)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, _SHIFT)
            if rng.random() < 0.4:  # dark outlines occur off the bird too
                cv2.polylines(img, [pts], True, (25, 25, 25), 1, cv2.LINE_AA, _SHIFT)
        else:  # line / stroke
            d = rng.normal(size=2)
            d *= radius * 1.5 / (np.linalg.norm(d) + 1e-9)
            a, b = ((centre - d) * (1 << _SHIFT)).astype(int), ((centre + d) * (1 << _SHIFT)).astype(int)
            thick = int(rng.integers(1, max(2, size // 45) + 1))
            cv2.line(img, tuple(int(v) for v in a), tuple(int(v) for v in b), colour, thick, cv2.LINE_AA, _SHIFT)
    if rng.random() < 0.5:  # a branch crossing the image
        y0, y1 = rng.uniform(0.3, 1.0, 2) * size
        brown = tuple(int(v) for v in np.clip(np.array([95, 70, 45]) + rng.uniform(-25, 25, 3), 0, 255))
        thick = max(2, int(size * rng.uniform(0.015, 0.04)))
        pts = ((0, int(y0 * (1 << _SHIFT))), (int(size * (1 << _SHIFT)), int(y1 * (1 << _SHIFT))))
        cv2.line(img, pts[0], pts[1], brown, thick, cv2.LINE_AA, _SHIFT)
    return img
