"""Naive re-computations shared by several tests (written for clarity, not speed)."""

from __future__ import annotations

import math

import numpy as np


def naive_bilinear(m, out_h, out_w):
    """align_corners=False bilinear, as PyTorch defines it (source index clamped at 0)."""
    in_h, in_w = m.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        sy = max((i + 0.5) * in_h / out_h - 0.5, 0.0)
        y0 = int(math.floor(sy))
        y1, ly = min(y0 + 1, in_h - 1), sy - y0
        for j in range(out_w):
            sx = max((j + 0.5) * in_w / out_w - 0.5, 0.0)
            x0 = int(math.floor(sx))
            x1, lx = min(x0 + 1, in_w - 1), sx - x0
            out[i, j] = (1 - ly) * ((1 - lx) * m[y0, x0] + lx * m[y0, x1]) + ly * (
                (1 - lx) * m[y1, x0] + lx * m[y1, x1]
            )
    return out
