"""Occlusion helpers: exact pixels filled, and background patches that never touch the object."""

from __future__ import annotations

import numpy as np
import torch

from fgvc_core.explain.scoring.occlusion import background_patches, occlude_boxes


def test_occlude_fills_exactly_the_pixels_whose_centre_is_inside():
    images = torch.ones(2, 3, 10, 12)
    boxes = [np.array([[2.0, 3.0, 4.0, 2.0]]), np.array([[0.0, 0.0, 1.4, 1.6], [10.6, 8.0, 5.0, 5.0]])]
    out = occlude_boxes(images, boxes, value=-1.0)
    expect = torch.ones(2, 3, 10, 12)
    for i, image_boxes in enumerate(boxes):
        for r in range(10):
            for c in range(12):
                for x, y, w, h in image_boxes:
                    if x <= c + 0.5 <= x + w and y <= r + 0.5 <= y + h:
                        expect[i, :, r, c] = -1.0
    assert torch.equal(out, expect)
    assert torch.equal(images, torch.ones(2, 3, 10, 12))  # input untouched
    assert (out[0] == -1).sum() == 3 * 4 * 2


def test_background_patches_match_sizes_and_avoid_the_object():
    parts = [np.array([[40.0, 40.0, 10.0, 12.0], [60.0, 50.0, 8.0, 8.0]])] * 20
    objects = np.array([[30.0, 30.0, 50.0, 40.0]] * 20)
    patches = background_patches(parts, objects, (100, 120), seed=3)
    for boxes, obj in zip(patches, objects):
        assert boxes.shape == (2, 4)
        assert np.allclose(boxes[:, 2:], [[10, 12], [8, 8]])
        for x, y, w, h in boxes:
            assert 0 <= x and x + w <= 120 and 0 <= y and y + h <= 100
            assert x + w <= obj[0] or obj[0] + obj[2] <= x or y + h <= obj[1] or obj[1] + obj[3] <= y
    assert not np.allclose(patches[0], patches[1])  # random positions
    again = background_patches(parts, objects, (100, 120), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(patches, again))


def test_patch_that_cannot_fit_off_the_object_is_dropped():
    parts = [np.array([[10.0, 10.0, 20.0, 20.0]])]
    whole = np.array([[0.0, 0.0, 40.0, 40.0]])
    assert background_patches(parts, whole, (40, 40))[0].shape == (0, 4)
