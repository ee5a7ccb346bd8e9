"""Explanation metrics against naive loops written here, on small hand-made maps and boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from fgvc_core.errors import ConfigError
from fgvc_core.explain.scoring import metrics as M
from fgvc_core.explain.scoring import perturbation as P
from tests.naive import naive_bilinear

# ------------------------------------------------------------------------------------------ naive helpers


def naive_inside(px, py, box, tol=0.0):
    x, y, w, h = box
    dx = max(x - px, 0.0, px - (x + w))
    dy = max(y - py, 0.0, py - (y + h))
    return math.sqrt(dx * dx + dy * dy) <= tol


def naive_union_mask(boxes, h, w):
    mask = np.zeros((h, w), dtype=bool)
    for i in range(h):
        for j in range(w):
            mask[i, j] = any(naive_inside(j + 0.5, i + 0.5, b) for b in boxes)
    return mask


def naive_argmax(m):
    best, where = -math.inf, None
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j] > best:  # strict: the first maximum in row-major order wins
                best, where = m[i, j], (i, j)
    return where


def naive_nearest(m, out_h, out_w):
    in_h, in_w = m.shape
    return np.array(
        [[m[int((i + 0.5) * in_h / out_h), int((j + 0.5) * in_w / out_w)] for j in range(out_w)] for i in range(out_h)]
    )


def naive_energy(m, boxes):
    m = np.maximum(m, 0)
    inside = sum(
        m[i, j] for i in range(m.shape[0]) for j in range(m.shape[1]) if naive_union_mask(boxes, *m.shape)[i, j]
    )
    return inside / m.sum()


# ---------------------------------------------------------------------------------------- pointing game


def test_pointing_peak_inside_and_outside():
    boxes = [[(1, 1, 3, 2), (5, 5, 2, 2)], [(1, 1, 3, 2)]]
    maps = np.zeros((2, 8, 8))
    maps[0, 6, 5] = 1.0  # in the second box of image 0
    maps[1, 6, 5] = 1.0  # image 1 has no box there
    hits = M.pointing_game(maps, boxes)
    expected = [any(naive_inside(5.5, 6.5, b) for b in bs) for bs in boxes]
    assert hits.dtype == bool and hits.tolist() == expected == [True, False]


def test_pointing_ties_go_to_first_in_row_major_order():
    box = [(1, 4, 3, 3)]  # covers pixel (row 5, col 2) only among the two peaks
    m = np.zeros((8, 8))
    m[1, 6] = m[5, 2] = 2.0  # (1, 6) comes first in row-major order and is outside
    assert naive_argmax(m) == (1, 6)
    assert M.peak_points(m).tolist() == [[6.5, 1.5]]
    assert M.pointing_game(m, [box]).tolist() == [False]
    m2 = np.zeros((8, 8))
    m2[1, 2] = m2[5, 6] = 2.0
    box2 = [(1, 0, 3, 3)]  # covers (1, 2), which is now the first maximum
    assert M.pointing_game(m2, [box2]).tolist() == [True]


def test_pointing_tolerance_is_euclidean_growth():
    box = (2, 2, 4, 4)  # [2, 6] x [2, 6]
    m = np.zeros((10, 10))
    m[7, 7] = 1.0  # centre (7.5, 7.5): 1.5 px right and below the corner -> distance 2.121
    d = math.hypot(1.5, 1.5)
    for tol in (0.0, 1.6, 2.0, 2.2, 5.0):
        assert M.pointing_game(m, [[box]], tolerance=tol)[0] == naive_inside(7.5, 7.5, box, tol) == (tol >= d)
    with pytest.raises(ConfigError):
        M.pointing_game(m, [[box]], tolerance=-1)


def test_pointing_resolution_mismatch_bilinear_and_cell_centre():
    grid = np.zeros((4, 4))
    grid[1, 1], grid[1, 2] = 1.0, 0.9  # bilinear upsampling moves the peak towards the right neighbour
    up = naive_bilinear(grid, 16, 16)
    r, c = naive_argmax(up)
    assert (r, c) == (5, 6)  # rows 5 and 6 tie (symmetric), the first wins
    box = [(6.2, 4, 1.8, 4)]  # holds the bilinear peak (6.5, 5.5) but not the cell centre (6.0, 6.0)
    assert M.peak_points(grid, 16).tolist() == [[c + 0.5, r + 0.5]]
    assert M.peak_points(grid, 16, upsample="cell_centre").tolist() == [[6.0, 6.0]]
    assert M.pointing_game(grid, [box], image_size=16).tolist() == [True]
    assert M.pointing_game(grid, [box], image_size=16, upsample="cell_centre").tolist() == [False]
    # Non-square frame: (H, W) = (8, 16), cell centre scales per axis.
    assert M.peak_points(grid, (8, 16), upsample="cell_centre").tolist() == [[6.0, 3.0]]


def test_images_without_boxes_are_an_error_and_padding_is_ignored():
    boxes = torch.tensor([[[1.0, 1.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0], [float("nan")] * 4]])
    assert M.has_part_boxes(boxes).tolist() == [True, False]
    with pytest.raises(ConfigError, match="no part box"):
        M.pointing_game(np.ones((2, 4, 4)), boxes)
    m = np.zeros((1, 4, 4))
    m[0, 1, 1] = 1
    assert M.pointing_game(m, boxes[:1]).tolist() == [True]


# ------------------------------------------------------------------------------------------ part energy


def test_part_energy_counts_the_union_once():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 9, 9))
    boxes = [[(1, 1, 4, 4), (3, 3, 4, 4)], [(0, 0, 2.4, 9), (6.6, 2, 5, 3)]]  # overlapping / fractional, clipped
    energy = M.part_energy(maps, boxes)
    expected = [naive_energy(m, b) for m, b in zip(maps, boxes)]
    np.testing.assert_allclose(energy, expected, rtol=1e-12)
    summed = sum(maps[0][naive_union_mask([b], 9, 9)].sum() for b in boxes[0]) / maps[0].sum()
    assert summed > energy[0] + 0.01  # a per-box sum would double count the overlap


def test_part_energy_clips_negatives_and_zero_map_is_nan():
    m = np.array([[[-5.0, 1.0], [3.0, 0.0]], [[-1.0, 0.0], [0.0, -2.0]]])
    boxes = [[(0, 0, 1, 1), (1, 0, 1, 1)]] * 2  # the whole top row
    energy = M.part_energy(m, boxes)
    assert energy[0] == pytest.approx(1.0 / 4.0)
    assert math.isnan(energy[1])


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_part_energy_upsamples_to_the_frame(mode):
    rng = np.random.default_rng(1)
    grid = rng.random((3, 4))
    boxes = [(2, 1, 5, 4)]
    up = naive_bilinear(grid, 9, 12) if mode == "bilinear" else naive_nearest(grid, 9, 12)
    assert M.part_energy(grid, [boxes], image_size=(9, 12), upsample=mode)[0] == pytest.approx(naive_energy(up, boxes))


# -------------------------------------------------------------------------------------------- baselines


def test_centre_point_baseline():
    boxes = [[(3, 3, 2, 2)], [(0, 0, 3.9, 3.9)], [(0, 0, 3.9, 3.9)]]
    assert (
        M.center_point_baseline(8, boxes).tolist() == [naive_inside(4, 4, b[0]) for b in boxes] == [True] + [False] * 2
    )
    assert M.center_point_baseline(8, boxes[1:2], tolerance=0.2).tolist() == [True]  # 0.1 * sqrt(2) away
    assert M.center_point_baseline((8, 20), [[(9, 3, 2, 2)]]).tolist() == [True]  # centre (10, 4) of a (H=8, W=20)


def test_random_point_exact_union_area_and_monte_carlo():
    h, w = 10, 20
    a, b, c = (2, 1, 6, 4), (5, 3, 6, 6), (16, 7, 10, 10)  # a and b overlap, c sticks out of the frame

    def clipped_area(box):
        x, y, bw, bh = box
        return max(min(x + bw, w) - max(x, 0), 0) * max(min(y + bh, h) - max(y, 0), 0)

    overlap = (3, 2, 3, 2)  # a ∩ b = [5, 8] x [3, 5]
    exact = (clipped_area(a) + clipped_area(b) - clipped_area(overlap) + clipped_area(c)) / (h * w)
    got = M.random_point_baseline((h, w), [[a, b, c]])
    assert got[0] == pytest.approx(exact, abs=1e-12)
    n = 40_000
    est = M.random_point_baseline((h, w), [[a, b, c]], n=n, seed=3)[0]
    assert abs(est - exact) < 4 * math.sqrt(exact * (1 - exact) / n)  # 4 standard errors


def test_random_point_with_tolerance_matches_rounded_rectangle_area():
    h = w = 40
    box, t = (10, 12, 8, 6), 3.0
    exact = (8 * 6 + 2 * t * (8 + 6) + math.pi * t * t) / (h * w)  # the box grown by a disc of radius t
    n = 40_000
    est = M.random_point_baseline(h, [[box]], n=n, seed=0, tolerance=t)[0]
    assert abs(est - exact) < 4 * math.sqrt(exact * (1 - exact) / n)
    with pytest.raises(ConfigError, match="pass n="):
        M.random_point_baseline(h, [[box]], tolerance=t)


def test_energy_baselines():
    boxes = [[(1, 1, 4, 4), (3, 3, 4, 4)], [(0, 0, 8, 2)]]  # integer boxes: pixel fraction == area fraction
    np.testing.assert_allclose(M.uniform_energy_baseline(8, boxes), M.union_area_fraction(boxes, 8), rtol=1e-12)
    sigma = 0.3
    g = np.array([[math.exp(-(((j + 0.5 - 4) / 2.4) ** 2 + ((i + 0.5 - 4) / 2.4) ** 2) / 2) for j in range(8)]
                  for i in range(8)])  # fmt: skip
    np.testing.assert_allclose(M.centre_gaussian_map(8, sigma), g, rtol=1e-12)
    np.testing.assert_allclose(
        M.gaussian_energy_baseline(8, boxes, sigma), [naive_energy(g, b) for b in boxes], rtol=1e-12
    )


# ------------------------------------------------------------------------------------------------ crops


def test_crop_recall_full_and_partial_parts():
    crops = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 6, 6]])
    parts = [[(1, 1, 2, 2), (8, 8, 4, 4)], [(1, 1, 2, 2), (9, 2, 2, 2)], [(0, 0, 2, 2)]]

    def naive(crop, boxes, min_overlap):
        inside = 0
        for x, y, bw, bh in boxes:
            iw = max(0, min(x + bw, crop[2]) - max(x, crop[0]))
            ih = max(0, min(y + bh, crop[3]) - max(y, crop[1]))
            inside += iw * ih / (bw * bh) >= min_overlap
        return inside / len(boxes)

    for min_overlap in (1.0, 0.5, 0.25, 0.1):
        got = M.crop_recall(crops, parts, min_overlap=min_overlap)
        np.testing.assert_allclose(got, [naive(c, p, min_overlap) for c, p in zip(crops, parts)])
    # Part 2 of image 0 is 1/4 inside, part 2 of image 1 is 1/2 inside.
    assert M.crop_recall(crops, parts).tolist() == [0.5, 0.5, 0.0]
    assert M.crop_recall(crops, parts, min_overlap=0.5).tolist() == [0.5, 1.0, 0.0]
    assert M.crop_recall(crops, parts, min_overlap=0.25).tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(ConfigError):
        M.crop_recall(crops, parts, min_overlap=0.0)


def test_crop_area_fraction_clips_to_the_frame():
    crops = torch.tensor([[0.0, 0.0, 16.0, 8.0], [4.0, 2.0, 8.0, 6.0], [-4.0, 6.0, 4.0, 12.0]])
    got = M.crop_area_fraction(crops, (8, 16))
    assert got.tolist() == [1.0, 16 / 128, (4 * 2) / 128]


# ------------------------------------------------------------------------------------------- adapters


def test_part_boxes_to_input_and_keypoint_boxes():
    from fgvc_core.data.transforms import preprocess_config

    pp = preprocess_config("demo", img_size=100)  # plain resize: 400 x 200 (W, H) -> 100 x 100
    boxes = [(40, 20, 80, 40), (0, 0, 0, 5)]  # the second is padding
    got = M.part_boxes_to_input(boxes, (400, 200), pp)
    np.testing.assert_allclose(got, [[10, 10, 20, 20]])
    kp = np.array([[10, 20, 1], [30, 40, 0], [50, 60, 1]])
    np.testing.assert_allclose(M.keypoint_boxes(kp, 5), [[5, 15, 10, 10], [45, 55, 10, 10]])
    np.testing.assert_allclose(M.keypoint_boxes(kp, 5, indices=[1, 2]), [[45, 55, 10, 10]])


# -------------------------------------------------------------------------------- deletion / insertion


def weighted_model(weights: torch.Tensor):
    """p(class 0) = sum_i a_i x_i over the pixels of channel 0; p(class 1) = 1 - p(class 0)."""

    def model_fn(x: torch.Tensor) -> torch.Tensor:
        p = (x[:, 0].reshape(len(x), -1).double() * weights.reshape(1, -1)).sum(dim=1)
        return torch.stack([p, 1 - p], dim=1)

    return model_fn


def naive_curves(image, substrate_del, substrate_ins, weights, order, counts):
    deletion, insertion = [], []
    for n in counts:
        removed = set(order[:n])
        d = i = 0.0
        for k in range(weights.size):
            d += weights.flat[k] * (substrate_del.flat[k] if k in removed else image.flat[k])
            i += weights.flat[k] * (image.flat[k] if k in removed else substrate_ins.flat[k])
        deletion.append(d)
        insertion.append(i)
    return np.array(deletion), np.array(insertion)


def naive_trapezoid(xs, ys):
    return sum((xs[k + 1] - xs[k]) * (ys[k + 1] + ys[k]) / 2 for k in range(len(xs) - 1))


def test_deletion_insertion_analytic_one_hot():
    a = torch.zeros(4, 4, dtype=torch.float64)
    a[1, 1] = 1.0
    images = torch.ones(1, 1, 4, 4)
    out = P.deletion_insertion_auc(weighted_model(a), images, a[None], steps=4, deletion_substrate="zero",
                                   insertion_substrate="zero")  # fmt: skip
    np.testing.assert_allclose(out["fractions"], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(out["deletion_curve"][0], [1, 0, 0, 0, 0])
    assert out["deletion_auc"][0] == pytest.approx(0.5 * 0.25)  # the one pixel goes first
    assert out["insertion_auc"][0] == pytest.approx(0.5 * 0.25 + 0.75)
    # An uninformative (constant) map removes pixels in row-major order: pixel 5 goes at step 2 (n = 8).
    flat = P.deletion_insertion_auc(weighted_model(a), images, torch.ones(1, 2, 2), steps=4,
                                    deletion_substrate="zero", insertion_substrate="zero")  # fmt: skip
    np.testing.assert_allclose(flat["deletion_curve"][0], [1, 1, 0, 0, 0])
    assert flat["deletion_auc"][0] == pytest.approx(0.25 + 0.125)


def test_deletion_insertion_matches_naive_with_mean_substrate():
    torch.manual_seed(0)
    b, h, w = 2, 5, 5
    weights = torch.rand(h, w, dtype=torch.float64)
    weights /= weights.sum()
    images = torch.rand(b, 3, h, w, dtype=torch.float64)
    maps = torch.rand(b, h, w)
    out = P.deletion_insertion_auc(weighted_model(weights), images, maps, target_classes=[0, 0], steps=7,
                                   deletion_substrate="mean", insertion_substrate="zero")  # fmt: skip
    counts = [round(k * h * w / 7) for k in range(8)]
    xs = np.array(counts) / (h * w)
    np.testing.assert_allclose(out["fractions"], xs)
    for i in range(b):
        img = images[i, 0].numpy()
        order = sorted(range(h * w), key=lambda k: (-float(maps[i].flatten()[k]), k))
        d, ins = naive_curves(img, np.full_like(img, img.mean()), np.zeros_like(img), weights.numpy(), order, counts)
        np.testing.assert_allclose(out["deletion_curve"][i], d, rtol=1e-10)
        np.testing.assert_allclose(out["insertion_curve"][i], ins, rtol=1e-10)
        assert out["deletion_auc"][i] == pytest.approx(naive_trapezoid(xs, d), rel=1e-10)
        assert out["insertion_auc"][i] == pytest.approx(naive_trapezoid(xs, ins), rel=1e-10)
    # Target class 1 scores 1 - p, and a low-resolution map is upsampled before ranking.
    out1 = P.deletion_insertion_auc(weighted_model(weights), images, maps, target_classes=1, steps=7,
                                    deletion_substrate="mean", insertion_substrate="zero")  # fmt: skip
    np.testing.assert_allclose(out1["deletion_curve"], 1 - out["deletion_curve"], rtol=1e-10)


def test_insertion_canvas_is_a_gaussian_blur():
    torch.manual_seed(1)
    weights = torch.zeros(8, 8, dtype=torch.float64)
    weights[3, 4] = 1.0  # the model reads one pixel
    images = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    maps = torch.zeros(1, 8, 8)  # nothing relevant: ranks in row-major order; pixel 28 is inserted at step 4 of 8
    out = P.deletion_insertion_auc(weighted_model(weights), images, maps, steps=8, target_classes=0,
                                   deletion_substrate="blur", insertion_substrate="blur", blur_sigma=1.0)  # fmt: skip
    blurred = gaussian_filter(images[0, 0].numpy(), sigma=1.0, mode="mirror", truncate=3.0)
    value, blur_value = images[0, 0, 3, 4].item(), blurred[3, 4]
    np.testing.assert_allclose(out["insertion_curve"][0], [blur_value] * 4 + [value] * 5, rtol=1e-6)
    np.testing.assert_allclose(out["deletion_curve"][0], [value] * 4 + [blur_value] * 5, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------- ROAD


def region_model(x: torch.Tensor) -> torch.Tensor:
    """p(class 0) rises with the mean of the 3x3 region at rows/cols 2..4 of channel 0."""
    p = torch.sigmoid(10 * (x[:, 0, 2:5, 2:5].mean(dim=(1, 2)) - 0.5))
    return torch.stack([p, 1 - p], dim=1)


def _region_inputs():
    images = torch.zeros(1, 1, 8, 8)
    images[:, :, 2:5, 2:5] = 1.0
    ramp = torch.linspace(0, 0.01, 64).reshape(8, 8)  # breaks ties
    good = images[:, 0] + ramp
    return images, good


def test_road_matches_the_library_combined_score():
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images, good = _region_inputs()
    ours = P.road_scores(region_model, images, good, target_classes=[0], percentiles=(40, 80), seed=7)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        lib = ROADCombined(percentiles=[40, 80])(images, good.numpy(), [ClassifierOutputTarget(0)], region_model)
    np.testing.assert_allclose(ours["combined"], lib, rtol=1e-6, atol=1e-7)
    assert ours["morf"].shape == ours["lerf"].shape == (1, 2)


def test_road_rewards_the_map_on_the_deciding_region():
    images, good = _region_inputs()
    p0 = region_model(images)[0, 0].item()
    right = P.road_scores(region_model, images, good, target_classes=[0], percentiles=(80,))
    wrong = P.road_scores(region_model, images, good.amax() - good, target_classes=[0], percentiles=(80,))
    # Removing the top 20% of the right map imputes the region from its dark neighbours: the score collapses.
    assert right["morf"][0, 0] < -0.5 * p0 and abs(right["lerf"][0, 0]) < 0.05
    assert right["combined"][0] > 0.2 and wrong["combined"][0] < -0.2


# ------------------------------------------------------------------------------------------------ summaries


def test_summarize_skips_nan_and_averages_hits():
    ours = np.array([True, False, True, True])
    energy = np.array([0.2, np.nan, 0.4, 0.9])
    s = M.summarize(ours, {"energy": energy, "empty": [np.nan]})
    assert list(s) == ["ours", "energy", "empty"]
    assert s["ours"]["mean"] == 0.75 and s["ours"]["n"] == 4
    assert s["ours"]["sem"] == pytest.approx(np.std([1, 0, 1, 1], ddof=1) / 2)
    assert s["energy"]["mean"] == pytest.approx(0.5) and s["energy"]["n"] == 3
    assert math.isnan(s["empty"]["mean"]) and s["empty"]["n"] == 0
    text = M.format_summary(s, "pointing game")
    assert text.splitlines()[0] == "pointing game" and "0.750" in text and "(n=3)" in text


def test_score_maps_rows_agree_with_the_single_metrics():
    rng = np.random.default_rng(2)
    maps = rng.random((3, 4, 4))
    boxes = [[(0, 0, 8, 8)], [(8, 8, 8, 8)], [(4, 4, 8, 8)]]
    scores = M.score_maps(maps, boxes, image_size=16)
    np.testing.assert_array_equal(scores["pointing"], M.pointing_game(maps, boxes, 16))
    np.testing.assert_array_equal(scores["pointing_centre"], [True, True, True])
    np.testing.assert_allclose(scores["pointing_random"], [0.25, 0.25, 0.25])
    np.testing.assert_allclose(scores["energy_uniform"], [0.25, 0.25, 0.25])
    summary = M.summarize_scores(scores)
    assert list(summary) == ["pointing game", "part energy"]
    assert list(summary["pointing game"]) == ["ours", "centre", "random"]
