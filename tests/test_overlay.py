"""Overlay helpers: exact pixels of blends, colormap ends, boxes, masks and PNG round trips."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fgvc_core.errors import ConfigError
from fgvc_core.explain.rendering import overlay as O
from tests.naive import naive_bilinear

JET_LOW, JET_HIGH = (0, 0, 128), (128, 0, 0)  # OpenCV's COLORMAP_JET at 0 (dark blue) and 255 (dark red), RGB


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)


def test_alpha_zero_is_the_image_and_alpha_one_the_colours(image):
    heat = np.random.default_rng(1).random((6, 8))
    np.testing.assert_array_equal(O.overlay_heatmap(image, heat, alpha=0.0), image)
    colours = O.overlay_heatmap(image, heat, alpha=1.0)
    low, high = np.unravel_index(heat.argmin(), heat.shape), np.unravel_index(heat.argmax(), heat.shape)
    assert tuple(colours[low]) == JET_LOW and tuple(colours[high]) == JET_HIGH
    np.testing.assert_array_equal(colours, O.colorize((heat - heat.min()) / (heat.max() - heat.min())))
    half = O.overlay_heatmap(image, heat, alpha=0.25)
    expected = np.round(0.75 * image.astype(float) + 0.25 * colours.astype(float)).astype(np.uint8)
    np.testing.assert_array_equal(half, expected)


def test_image_kinds_agree(image):
    heat = np.random.default_rng(2).random((3, 4))
    ref = O.overlay_heatmap(image, heat, alpha=0.4)
    np.testing.assert_array_equal(O.overlay_heatmap(Image.fromarray(image), heat, alpha=0.4), ref)
    np.testing.assert_array_equal(O.overlay_heatmap(image.astype(np.float32) / 255, heat, alpha=0.4), ref)
    grey = image[:, :, 0]
    np.testing.assert_array_equal(O.overlay_heatmap(grey, heat, alpha=0.0), np.repeat(grey[:, :, None], 3, 2))
    with pytest.raises(ConfigError):
        O.overlay_heatmap(image.astype(np.float32), heat)  # floats above 1
    with pytest.raises(ConfigError):
        O.overlay_heatmap(image, heat, alpha=1.5)


@pytest.mark.parametrize("seed", range(4))
def test_resize_map_is_torch_bilinear_without_align_corners_up_and_down(seed):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    for _ in range(25):
        h, w, out_h, out_w = (int(v) for v in rng.integers(1, 40, 4))
        heat = rng.normal(size=(h, w))
        want = F.interpolate(torch.from_numpy(heat)[None, None], size=(out_h, out_w), mode="bilinear",
                             align_corners=False)[0, 0].numpy()  # fmt: skip
        np.testing.assert_allclose(O.resize_map(heat, (out_h, out_w)), want, atol=1e-12, rtol=0)


def test_small_heatmap_is_resized_bilinearly_then_normalised():
    heat = np.array([[0.0, 1.0], [2.0, 5.0]])
    up = naive_bilinear(heat, 6, 8)
    np.testing.assert_allclose(O.resize_map(heat, (6, 8)), up, rtol=1e-12)
    mask = O.normalize_map(O.resize_map(heat, (6, 8)))
    np.testing.assert_allclose(mask, (up - up.min()) / (up.max() - up.min()), atol=1e-12)
    # The colour lookup truncates 255 * mask as pytorch-grad-cam does, so compare on our own mask.
    np.testing.assert_array_equal(O.overlay_heatmap(np.zeros((6, 8, 3), np.uint8), heat, alpha=1.0), O.colorize(mask))


def test_constant_heatmap_shows_the_low_end_of_the_colormap(image):
    out = O.overlay_heatmap(image, np.full((3, 3), 7.0), alpha=1.0)
    assert (out == np.array(JET_LOW, np.uint8)).all()
    viridis_low = O.overlay_heatmap(image, np.zeros((3, 3)), alpha=1.0, colormap="viridis")[0, 0]
    assert tuple(viridis_low) != JET_LOW
    with pytest.raises(ConfigError, match="unknown colormap"):
        O.overlay_heatmap(image, np.zeros((3, 3)), colormap="nope")


def test_library_rescale_is_show_cam_on_image(image):
    dark = (image // 2).astype(np.uint8)  # max 127: the library brightens it
    out = O.overlay_heatmap(dark, np.zeros((2, 2)), alpha=0.0, library_rescale=True)
    f = dark.astype(np.float32) / 255
    np.testing.assert_array_equal(out, np.uint8(255 * (f / f.max())))
    assert out.max() == 255 and dark.max() < 255


def naive_outline(h, w, x0, y0, x1, y1, width):
    mask = np.zeros((h, w), dtype=bool)
    for i in range(h):
        for j in range(w):
            inside = x0 <= j < x1 and y0 <= i < y1
            border = min(j - x0, x1 - 1 - j, i - y0, y1 - 1 - i)
            mask[i, j] = inside and border < width
    return mask


@pytest.mark.parametrize("width", [1, 2])
def test_box_pixels_are_drawn_inside_the_box(width):
    canvas = np.zeros((12, 14, 3), np.uint8)
    out = O.draw_boxes(canvas, [[2, 3, 10, 8]], colors=[(10, 200, 30)], width=width)
    expected = naive_outline(12, 14, 2, 3, 10, 8, width)
    drawn = (out != 0).any(axis=2)
    np.testing.assert_array_equal(drawn, expected)
    assert (out[expected] == (10, 200, 30)).all()
    assert (canvas == 0).all()  # the input is untouched


def test_default_colours_and_labels():
    canvas = np.zeros((40, 40, 3), np.uint8)
    out = O.draw_boxes(canvas, np.array([[5.2, 20.4, 15.0, 30.0], [20, 20, 30, 30]]), width=1)
    assert tuple(out[20, 5]) == O.PALETTE[0] and tuple(out[20, 20]) == O.PALETTE[1]  # rounded edges
    labelled = O.draw_boxes(canvas, [[10, 20, 30, 35]], colors=[(255, 0, 0)], labels=["crest"], width=1)
    tag = (labelled[:20] != 0).any(axis=2)  # a tag above the box, starting at its left edge
    assert tag.any() and np.argwhere(tag)[:, 1].min() == 10
    with pytest.raises(ConfigError):
        O.draw_boxes(canvas, [[0, 0, 5, 5]], labels=["a", "b"])


def test_grid_to_image_mask():
    grid = np.array([[1, 0, 0], [0, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(O.grid_to_image_mask(grid, (8, 12)), np.kron(grid, np.ones((4, 4), bool)))
    up = O.grid_to_image_mask(grid, (5, 7))  # not a multiple: each pixel takes the cell its centre lies in
    naive = [[grid[int((i + 0.5) * 2 / 5), int((j + 0.5) * 3 / 7)] for j in range(7)] for i in range(5)]
    np.testing.assert_array_equal(up, naive)


def naive_mask_outline(mask, width):
    h, w = mask.shape
    out = np.zeros_like(mask)
    for i in range(h):
        for j in range(w):
            if not mask[i, j]:
                continue
            # city-block distance to the nearest pixel outside the mask, the frame around the image included
            d = min(i + 1, j + 1, h - i, w - j)
            for a in range(h):
                for b in range(w):
                    if not mask[a, b]:
                        d = min(d, abs(a - i) + abs(b - j))
            out[i, j] = d <= width
    return out


@pytest.mark.parametrize("width", [1, 2])
def test_mask_outline(width):
    mask = np.zeros((9, 10), dtype=bool)
    mask[2:8, 3:9] = True
    mask[0:4, 0:2] = True  # touches the image border: it is closed there
    np.testing.assert_array_equal(O.mask_outline(mask, width), naive_mask_outline(mask, width))
    drawn = O.draw_mask_outline(np.zeros((9, 10, 3), np.uint8), mask, color=(1, 2, 3), width=width)
    np.testing.assert_array_equal((drawn == (1, 2, 3)).all(axis=2), naive_mask_outline(mask, width))


def test_draw_mask_outline_upsamples_a_grid_mask():
    grid = np.zeros((3, 3), dtype=bool)
    grid[1, 1] = True
    drawn = O.draw_mask_outline(np.zeros((12, 12, 3), np.uint8), grid, color=(9, 9, 9), width=1)
    np.testing.assert_array_equal((drawn == 9).all(axis=2), naive_mask_outline(O.grid_to_image_mask(grid, 12), 1))


def test_png_bytes_round_trip(image):
    for array in (image, image[:, :, 0]):
        decoded = np.array(Image.open(io.BytesIO(O.array_to_png_bytes(array))))
        np.testing.assert_array_equal(decoded, array)


def test_export_figure_and_figure_png(tmp_path, image):
    panels = [image, O.overlay_heatmap(image, np.eye(3))]
    path = tmp_path / "row.png"
    fig = O.export_figure(panels, titles=["input", "cam"], suptitle="image 0", path=path, panel_size=1.0, dpi=50)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["input", "cam"]
    for ax, panel in zip(axes, panels):
        np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), panel)
    saved = Image.open(path)
    assert saved.format == "PNG" and saved.size[0] > saved.size[1]  # a row of panels is wider than tall
    data = O.figure_to_png_bytes(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(io.BytesIO(data)).size[0] > 0
    with pytest.raises(ConfigError):
        O.export_figure(panels, titles=["only one"])


def test_overlay_jpeg_decodes_to_the_fixed_scale_overlay_and_is_memoised_on_content():
    import io

    from PIL import Image

    from fgvc_core.app.map_panels import fixed_scale_overlay, overlay_jpeg

    ramp = np.linspace(0, 255, 32)
    rgb = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (32, 1)), np.full((32, 32), 90.0)], -1).astype(np.uint8)
    m = np.random.default_rng(0).random((4, 4))  # smooth once resized: JPEG keeps it close
    first = overlay_jpeg(rgb, m, 0.1, 0.9, alpha=0.6)
    decoded = np.asarray(Image.open(io.BytesIO(first)).convert("RGB")).astype(float)
    expected = fixed_scale_overlay(rgb, m, 0.1, 0.9, alpha=0.6).astype(float)
    assert np.abs(decoded - expected).mean() < 4  # JPEG's loss, not a different picture
    assert overlay_jpeg(rgb.copy(), m.copy(), 0.1, 0.9, alpha=0.6) is first  # same content: the cached bytes
    assert overlay_jpeg(rgb, m + 0.01, 0.1, 0.9, alpha=0.6) != first
    assert overlay_jpeg(rgb, m, 0.1, 0.8, alpha=0.6) != first  # the colour scale is part of the key
