"""Presets, `build_transform`, `denormalize` and the box geometry that undoes the test transform."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fgvc_core import ConfigError, build_transform
from fgvc_core.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESETS,
    denormalize,
    describe_preprocess,
    input_box_to_original,
    kept_fraction,
    original_box_to_input,
    preprocess_config,
)


def _gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1).astype(np.uint8))


# -------------------------------------------------------------------------------------------------- presets
def test_presets_follow_the_papers() -> None:
    # Official RAMS-Trans code: Resize((600, 600)) -> RandomCrop(448); CRA-SMRA paper: 550 x 550 -> centre 448, and
    # its training augments only by a horizontal flip (centre crop in training too).
    assert preprocess_config("rams_trans") == {
        "preset": "rams_trans", "resize": 600, "img_size": 448, "crop": "center", "resize_mode": "square",
        "train_crop": "random", "interpolation": "bilinear", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
    }  # fmt: skip
    cra = preprocess_config("cra_smra")
    assert (cra["resize"], cra["img_size"], cra["resize_mode"], cra["train_crop"]) == (550, 448, "square", "center")
    demo = preprocess_config("demo")
    assert (demo["resize"], demo["img_size"], demo["crop"]) == (224, 224, "none")
    assert set(PRESETS) == {"rams_trans", "cra_smra", "demo"}


def test_img_size_scales_the_resize_and_is_json_able() -> None:
    cfg = preprocess_config("rams_trans", img_size=224)
    assert (cfg["resize"], cfg["img_size"]) == (300, 224)  # 600 * 224 / 448: same crop fraction
    assert preprocess_config("demo", img_size=96)["resize"] == 96
    assert json.loads(json.dumps(cfg)) == cfg


@pytest.mark.parametrize(("preset", "img_size"), [("nope", None), ("demo", 0), ("demo", 12.5), ("demo", True)])
def test_bad_preset_arguments(preset: str, img_size) -> None:
    with pytest.raises(ConfigError):
        preprocess_config(preset, img_size)


# ---------------------------------------------------------------------------------------------- transforms
def test_square_test_transform_is_square_resize_centre_crop_normalise() -> None:
    cfg = preprocess_config("rams_trans", img_size=32)  # resize 43 (600 * 32 / 448 = 42.86 -> 43)
    image = _gradient(80, 50)
    out = build_transform(cfg)(image)
    # naive re-computation with PIL: both sides to 43 (aspect ratio not kept), centre crop 32
    resized = image.resize((43, 43), Image.BILINEAR, reducing_gap=None)
    left = top = round((43 - 32) / 2)
    crop = np.asarray(resized.crop((left, top, left + 32, top + 32))).astype(np.float32) / 255
    expected = (crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expected, atol=0.05)


def test_square_resize_keeps_more_of_a_wide_image_than_the_short_side_rule() -> None:
    """The issue's numbers: on a 1.6:1 image the short-side rule keeps ~35 %, the papers' square rule ~56 %."""
    square = preprocess_config("rams_trans")
    short = preprocess_config("rams_trans", resize_mode="short_side")
    wide = (1600, 1000)
    assert kept_fraction(wide, square) == pytest.approx((448 / 600) ** 2, abs=1e-3)  # 0.557
    assert kept_fraction(wide, short) == pytest.approx(448 * 448 / (960 * 600), abs=1e-3)  # 0.348
    assert kept_fraction((640, 480), preprocess_config("cra_smra")) == pytest.approx((448 / 550) ** 2, abs=1e-3)
    assert kept_fraction(wide, preprocess_config("demo")) == 1.0
    assert describe_preprocess(square) == "resized to 600x600 (aspect ratio not kept), then centre-cropped to 448x448"
    assert describe_preprocess(short).startswith("short side resized to 600 (aspect ratio kept)")
    assert describe_preprocess(preprocess_config("demo")) == "resized to 224x224 (aspect ratio not kept), no crop"


def test_a_sidecar_without_resize_mode_keeps_the_short_side_rule_it_was_trained_with() -> None:
    legacy = {
        k: v for k, v in preprocess_config("rams_trans", img_size=32).items() if k not in ("resize_mode", "train_crop")
    }
    image = _gradient(80, 50)
    explicit = {**legacy, "resize_mode": "short_side", "train_crop": "random"}
    assert torch.equal(build_transform(legacy)(image), build_transform(explicit)(image))


def test_cra_smra_paper_recipe_centre_crops_in_training_and_only_flips() -> None:
    cfg = preprocess_config("cra_smra", img_size=32)
    image = _gradient(80, 50)
    train, test = build_transform(cfg, train=True), build_transform(cfg)
    ref = test(image)
    torch.manual_seed(0)
    outs = [train(image) for _ in range(10)]
    assert all(torch.allclose(o, ref) or torch.allclose(o, ref.flip(-1)) for o in outs)
    assert any(torch.allclose(o, ref.flip(-1)) for o in outs) and any(torch.allclose(o, ref) for o in outs)
    random_crop = build_transform({**cfg, "train_crop": "random"}, train=True)
    assert any(
        not (torch.allclose(o, ref) or torch.allclose(o, ref.flip(-1))) for o in (random_crop(image) for _ in range(10))
    )


def test_short_side_test_transform_is_resize_centre_crop_normalise() -> None:
    cfg = preprocess_config("rams_trans", img_size=32, resize_mode="short_side")
    image = _gradient(80, 50)
    out = build_transform(cfg)(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    # naive re-computation with PIL: short side 50 -> 43, long 80 -> int(43 * 80 / 50) = 68, centre crop 32
    resized = image.resize((68, 43), Image.BILINEAR, reducing_gap=None)
    left, top = round((68 - 32) / 2), round((43 - 32) / 2)
    crop = np.asarray(resized.crop((left, top, left + 32, top + 32))).astype(np.float32) / 255
    expected = (crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expected, atol=0.05)


def test_meta_dict_and_preprocess_dict_give_the_same_transform() -> None:
    cfg = preprocess_config("cra_smra", img_size=40)
    image = _gradient(64, 48)
    a = build_transform(cfg)(image)
    b = build_transform({"preprocess": cfg, "classes": ["x"], "config": {}})(image)
    assert torch.equal(a, b)


def test_demo_preset_resizes_without_cropping() -> None:
    cfg = preprocess_config("demo", img_size=24)
    image = Image.new("RGB", (60, 30), (255, 255, 255))
    ImageDraw.Draw(image).rectangle((0, 0, 1, 29), fill=(255, 0, 0))  # a part at the very border survives
    out = denormalize(build_transform(cfg)(image), cfg)
    assert out.shape == (3, 24, 24)
    assert out[0, :, 0].min() > 0.9 and out[1, :, 0].max() < 0.8  # leftmost column still red: nothing was cut


def test_train_transform_crops_randomly_and_flips() -> None:
    cfg = preprocess_config("rams_trans", img_size=32)
    image = _gradient(80, 50)
    train = build_transform(cfg, train=True)
    torch.manual_seed(0)
    outs = [train(image) for _ in range(12)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert len({o.sum().item() for o in outs}) > 1  # different crops/flips
    # a horizontal flip shows up as the red channel (x gradient) decreasing left to right
    assert any(o[0, :, 0].mean() > o[0, :, -1].mean() for o in outs)
    assert any(o[0, :, 0].mean() < o[0, :, -1].mean() for o in outs)
    test = build_transform(cfg)
    assert torch.equal(test(image), test(image))


def test_demo_train_only_flips() -> None:
    cfg = preprocess_config("demo", img_size=24)
    image = _gradient(24, 24)
    train, test = build_transform(cfg, train=True), build_transform(cfg)
    torch.manual_seed(0)
    ref = test(image)
    for _ in range(8):
        out = train(image)
        assert torch.allclose(out, ref) or torch.allclose(out, ref.flip(-1))


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"img_size": 0}, "img_size"),
        ({"resize": "600"}, "resize"),
        ({"crop": "random"}, "crop"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"std": [0.2, 0.0, 0.2]}, "std"),
        ({"interpolation": "lanczos"}, "interpolation"),
        ({"resize_mode": "long_side"}, "resize_mode"),
        ({"train_crop": "five"}, "train_crop"),
        ({"resize": 100, "img_size": 448}, "resize"),
    ],
)
def test_invalid_preprocess_names_the_key(change: dict, key: str) -> None:
    cfg = {**preprocess_config("rams_trans"), **change}
    with pytest.raises(ConfigError, match=key):
        build_transform(cfg)


def test_missing_key_is_named() -> None:
    cfg = preprocess_config("demo")
    del cfg["std"]
    with pytest.raises(ConfigError, match="'std'"):
        build_transform({"preprocess": cfg})


def test_denormalize_inverts_normalisation_for_single_and_batch() -> None:
    cfg = preprocess_config("demo", img_size=20)
    image = _gradient(20, 20)
    x = build_transform(cfg)(image)
    pixels = torch.from_numpy(np.asarray(image).astype(np.float32) / 255).permute(2, 0, 1)
    torch.testing.assert_close(denormalize(x, cfg), pixels, atol=1e-5, rtol=0)
    batch = torch.stack([x, x.flip(-1)])
    out = denormalize(batch, {"preprocess": cfg})
    assert out.shape == (2, 3, 20, 20)
    torch.testing.assert_close(out[1], pixels.flip(-1), atol=1e-5, rtol=0)
    assert denormalize(torch.full((3, 4, 4), 50.0), cfg).max() == 1.0  # clamped for display


# ---------------------------------------------------------------------------------------------- geometry
def _expected_geometry(
    width: int, height: int, resize: int, size: int, mode: str = "short_side"
) -> tuple[float, float, int, int]:
    """Independent re-computation: ``square`` scales both sides to `resize`; ``short_side`` keeps the short side
    at `resize` and truncates the long side (torchvision's rules)."""
    if mode == "square":
        return width / resize, height / resize, round((resize - size) / 2), round((resize - size) / 2)
    if width <= height:
        new_w, new_h = resize, int(resize * height / width)
    else:
        new_w, new_h = int(resize * width / height), resize
    return width / new_w, height / new_h, round((new_w - size) / 2), round((new_h - size) / 2)


@pytest.mark.parametrize("mode", ["square", "short_side"])
@pytest.mark.parametrize("size", [(800, 500), (500, 800), (640, 640)])
def test_full_input_maps_to_the_centre_crop_region(size: tuple[int, int], mode: str) -> None:
    cfg = preprocess_config("rams_trans", resize_mode=mode)
    sx, sy, left, top = _expected_geometry(*size, 600, 448, mode)
    got = input_box_to_original((0, 0, 448, 448), size, cfg)
    expected = (left * sx, top * sy, (left + 448) * sx, (top + 448) * sy)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    if size == (800, 500) and mode == "short_side":  # written out: resize to 960x600, crop at (256, 76)
        np.testing.assert_allclose(got, (213.3333, 63.3333, 586.6667, 436.6667), atol=1e-3)
    if size == (800, 500) and mode == "square":  # resize to 600x600, crop at (76, 76), scales 800/600, 500/600
        np.testing.assert_allclose(got, (101.3333, 63.3333, 698.6667, 436.6667), atol=1e-3)


@pytest.mark.parametrize("mode", ["square", "short_side"])
@pytest.mark.parametrize("preset", ["rams_trans", "cra_smra", "demo"])
@pytest.mark.parametrize("size", [(800, 500), (500, 800), (300, 300)])
def test_drawn_box_round_trips_through_the_test_transform(preset: str, size: tuple[int, int], mode: str) -> None:
    """Draw a box, run the real test transform, find it in the input, map back: within ~1.5 input pixels."""
    cfg = preprocess_config(preset, img_size=112 if preset != "demo" else 96, resize_mode=mode)
    width, height = size
    box = (int(width * 0.40), int(height * 0.35), int(width * 0.62), int(height * 0.70))  # inside every crop
    image = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(255, 255, 255))
    x = denormalize(build_transform(cfg)(image), cfg).mean(0)
    ys, xs = torch.nonzero(x > 0.5, as_tuple=True)
    found = (xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1)
    back = input_box_to_original(found, size, cfg)
    sx, sy, _, _ = _expected_geometry(width, height, cfg["resize"], cfg["img_size"], mode)
    if cfg["crop"] == "none":
        sx, sy = width / cfg["img_size"], height / cfg["img_size"]
    tol = np.array([sx, sy, sx, sy]) * 1.5
    assert (np.abs(np.array(back) - np.array(box)) <= tol).all(), (back, box)
    # and the forward map puts the original box where the transform drew it
    fwd = original_box_to_input(box, size, cfg)
    assert (np.abs(np.array(fwd) - np.array(found)) <= 1.5).all(), (fwd, found)


def test_boxes_are_clipped_to_the_image() -> None:
    cfg = preprocess_config("demo", img_size=100)
    assert input_box_to_original((-10, -5, 150, 120), (400, 300), cfg) == (0.0, 0.0, 400.0, 300.0)
    cfg = preprocess_config("rams_trans", img_size=448)
    x0, y0, x1, y1 = original_box_to_input((0, 0, 800, 500), (800, 500), cfg)
    assert (x0, y0, x1, y1) == (0.0, 0.0, 448.0, 448.0)  # the crop cuts the borders off: clipped to the input
    cfg = preprocess_config("rams_trans", img_size=448, resize_mode="short_side")
    x0, y0, x1, y1 = original_box_to_input((0, 0, 800, 500), (800, 500), cfg)
    assert (x0, y0, x1, y1) == (0.0, 0.0, 448.0, 448.0)  # the crop cuts the sides off: clipped to the input


def test_input_and_original_maps_are_inverse() -> None:
    rng = np.random.default_rng(0)
    for cfg, size in itertools.product(
        [preprocess_config("cra_smra"), preprocess_config("cra_smra", resize_mode="short_side")],
        [(800, 500), (500, 800), (1024, 333)],
    ):
        for _ in range(5):
            a, b = sorted(rng.uniform(0, 448, 2)), sorted(rng.uniform(0, 448, 2))
            box = (a[0], b[0], a[1], b[1])
            there = input_box_to_original(box, size, cfg)
            np.testing.assert_allclose(original_box_to_input(there, size, cfg), box, atol=1e-6)


def test_box_accepts_a_tensor_and_rejects_wrong_length() -> None:
    cfg = preprocess_config("demo", img_size=100)
    assert input_box_to_original(torch.tensor([10.0, 20.0, 30.0, 40.0]), (200, 100), cfg) == (20, 20, 60, 40)
    with pytest.raises(ConfigError):
        input_box_to_original((1, 2, 3), (200, 100), cfg)


def test_an_explicit_resize_overrides_the_preset_scaling() -> None:
    cfg = preprocess_config("rams_trans", img_size=224, resize=448)  # the official RAMS-Trans Dogs loader
    assert (cfg["resize"], cfg["img_size"], cfg["resize_mode"]) == (448, 224, "square")
    assert build_transform(cfg)(_gradient(80, 50)).shape == (3, 224, 224)
    for bad in (100, 300.0, True):
        with pytest.raises(ConfigError, match="resize"):
            preprocess_config("rams_trans", img_size=224, resize=bad)
    with pytest.raises(ConfigError, match="does not crop"):
        preprocess_config("demo", img_size=96, resize=128)
