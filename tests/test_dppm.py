"""DPPM geometry: mask, largest 8-connected component, boxes in cells and pixels, batched crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fgvc_core.models.rams_trans import dppm


def _grid(rows: list[str]) -> torch.Tensor:
    """A (1, h, w) bool mask from strings of '#' and '.'."""
    return torch.tensor([[c == "#" for c in row] for row in rows]).unsqueeze(0)


L_SHAPE_FULL = [
    ".#...",
    ".#...",
    ".###.",
]


@pytest.mark.parametrize("patch", [16, 32])
def test_l_shape_component_and_box(patch):
    mask = _grid(L_SHAPE_FULL)  # 3x5 grid (non-square)
    comp = dppm.largest_component(mask)
    assert torch.equal(comp, mask)
    grid_box = dppm.component_box(comp)
    assert grid_box.tolist() == [[1, 0, 4, 3]]  # columns 1..3, rows 0..2, exclusive end
    px = dppm.grid_box_to_pixels(grid_box, (patch, patch))
    assert px.tolist() == [[1.0 * patch, 0.0, 4.0 * patch, 3.0 * patch]]


def test_two_blobs_largest_wins_and_ties_go_to_the_first_in_raster_order():
    mask = _grid(
        [
            "##...",
            "##..#",
            "...##",
            "..###",
        ]
    )
    comp = dppm.largest_component(mask)
    expected = _grid(
        [
            ".....",
            "....#",
            "...##",
            "..###",
        ]
    )
    assert torch.equal(comp, expected)
    assert dppm.component_box(comp).tolist() == [[2, 1, 5, 4]]
    tie = _grid(
        [
            "...##",
            "#....",
            "#....",
        ]
    )
    # Both have 2 cells; the top-right pair's first cell (0, 3) comes before (1, 0) in row-major order.
    assert torch.equal(dppm.largest_component(tie), _grid(["...##", ".....", "....."]))


def test_eight_connectivity_joins_diagonal_neighbours():
    mask = _grid(
        [
            "#....",
            ".#...",
            "..#.#",
            "...#.",
        ]
    )
    assert torch.equal(dppm.largest_component(mask), mask)


@pytest.mark.parametrize("patch_hw", [(16, 16), (32, 32), (16, 32)])
def test_empty_mask_falls_back_to_whole_image(patch_hw):
    mask = torch.zeros(2, 3, 5, dtype=torch.bool)
    comp = dppm.largest_component(mask)
    assert not comp.any()
    grid_box = dppm.component_box(comp)
    assert grid_box.tolist() == [[0, 0, 5, 3]] * 2
    ph, pw = patch_hw
    assert dppm.grid_box_to_pixels(grid_box, patch_hw).tolist() == [[0.0, 0.0, 5.0 * pw, 3.0 * ph]] * 2


def test_mask_touching_the_border():
    mask = _grid(
        [
            "....#",
            "....#",
            "#####",
        ]
    )
    comp = dppm.largest_component(mask)
    assert torch.equal(comp, mask)
    assert dppm.component_box(comp).tolist() == [[0, 0, 5, 3]]
    corner = _grid(["#....", ".....", "....#"])  # two single cells: the first in raster order wins
    assert dppm.component_box(dppm.largest_component(corner)).tolist() == [[0, 0, 1, 1]]


def _scipy_largest(mask: np.ndarray) -> np.ndarray:
    """Reference: scipy 8-connected labels; ties -> the component whose first raster cell is earliest."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return np.zeros_like(mask)
    keys = [(-(labels == lab).sum(), np.flatnonzero(labels == lab).min(), lab) for lab in range(1, count + 1)]
    return labels == min(keys)[2]


def test_batched_component_matches_scipy_on_random_masks():
    torch.manual_seed(1)
    masks = torch.rand(16, 7, 9) > 0.55
    got = dppm.largest_component(masks)
    for b in range(16):
        assert np.array_equal(got[b].numpy(), _scipy_largest(masks[b].numpy())), b


def test_long_spiral_wins_over_the_hook():
    # A one-cell-wide spiral: a long snake that plain label propagation needs many steps to cross.
    rows = [
        "#########",
        "........#",
        ".######.#",
        ".#....#.#",
        ".#.##.#.#",
        ".#..#.#.#",
        ".####.#.#",
        "......#.#",
        "#######.#",
    ]
    mask = _grid(rows)
    # Two components: the outer hook (top row + right column, 17 cells) and the inner spiral (28 cells).
    assert ndimage.label(mask[0].numpy(), structure=np.ones((3, 3)))[1] == 2
    got = dppm.largest_component(mask)[0].numpy()
    assert got.sum() == 28 and not got[0].any() and not got[:, 8].any()
    assert np.array_equal(got, _scipy_largest(mask[0].numpy()))


def test_proposal_mask_is_alpha_times_mean():
    scores = torch.rand(3, 4, 6)
    alpha = 1.2
    expected = torch.stack([s > alpha * s.mean() for s in scores])
    assert torch.equal(dppm.proposal_mask(scores, alpha), expected)
    # per-image thresholds
    alphas = torch.tensor([0.5, 1.0, 3.0])
    expected = torch.stack([s > a * s.mean() for s, a in zip(scores, alphas)])
    assert torch.equal(dppm.proposal_mask(scores, alphas), expected)


def test_propose_end_to_end_on_a_non_square_grid():
    scores = torch.full((1, 3 * 5), 0.1)
    scores[0, [6, 7, 12]] = 1.0  # cells (1,1), (1,2), (2,2)
    prop = dppm.propose(scores, (3, 5), (32, 32), 1.2)
    assert prop.grid_box.tolist() == [[1, 1, 3, 3]]
    assert prop.box.tolist() == [[32.0, 32.0, 96.0, 96.0]]


def _bilinear_reference(image: torch.Tensor, box: list[float], out_hw: tuple[int, int]) -> torch.Tensor:
    """Sample each output pixel centre at its continuous position in the image, clamping at the image border."""
    c, h, w = image.shape
    x0, y0, x1, y1 = box
    oh, ow = out_hw
    out = torch.zeros(c, oh, ow, dtype=torch.float64)
    img = image.double()
    for i in range(oh):
        for j in range(ow):
            y = min(max(y0 + (i + 0.5) * (y1 - y0) / oh - 0.5, 0.0), h - 1.0)
            x = min(max(x0 + (j + 0.5) * (x1 - x0) / ow - 0.5, 0.0), w - 1.0)
            ya, xa = int(np.floor(y)), int(np.floor(x))
            yb, xb = min(ya + 1, h - 1), min(xa + 1, w - 1)
            fy, fx = y - ya, x - xa
            out[:, i, j] = (
                img[:, ya, xa] * (1 - fy) * (1 - fx)
                + img[:, ya, xb] * (1 - fy) * fx
                + img[:, yb, xa] * fy * (1 - fx)
                + img[:, yb, xb] * fy * fx
            )
    return out.float()


def test_crop_and_resize_is_a_bilinear_resize_of_the_box():
    images = torch.rand(2, 3, 8, 12)
    boxes = torch.tensor([[4.0, 0.0, 12.0, 4.0], [0.0, 2.0, 6.0, 8.0]])
    crops = dppm.crop_and_resize(images, boxes, (8, 12))
    assert crops.shape == (2, 3, 8, 12)
    for b in range(2):
        expected = _bilinear_reference(images[b], boxes[b].tolist(), (8, 12))
        torch.testing.assert_close(crops[b], expected, atol=1e-5, rtol=0)
    whole = dppm.crop_and_resize(images, torch.tensor([[0.0, 0.0, 12.0, 8.0]] * 2), (8, 12))
    torch.testing.assert_close(whole, images, atol=1e-6, rtol=0)


def test_compose_boxes_maps_a_box_on_a_crop_back_to_the_input():
    outer = torch.tensor([[32.0, 16.0, 96.0, 48.0]])  # 64 x 32 region of a 64 x 128 (h x w) input
    inner = torch.tensor([[64.0, 0.0, 128.0, 32.0]])  # right half, top half of the resized crop
    assert dppm.compose_boxes(outer, inner, (64, 128)).tolist() == [[64.0, 16.0, 96.0, 32.0]]


def test_boxes_to_original_inverts_a_plain_resize():
    preprocess = {"resize": 64, "img_size": 64, "crop": "none", "mean": [0.5] * 3, "std": [0.5] * 3}
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [16.0, 32.0, 48.0, 64.0]])
    got = dppm.boxes_to_original(boxes, (200, 100), preprocess)  # (W, H) of the uploaded image
    sx, sy = 200 / 64, 100 / 64
    expected = torch.tensor([[0.0, 0.0, 200.0, 100.0], [16 * sx, 32 * sy, 48 * sx, 64 * sy]])
    torch.testing.assert_close(got, expected)
    per_image = dppm.boxes_to_original(boxes, [(200, 100), (64, 64)], preprocess)
    torch.testing.assert_close(per_image[1], boxes[1])
