"""Preprocessing presets, the transforms built from them, and the geometry that undoes the test transform.

A checkpoint stores the plain dict from `preprocess_config` in its JSON sidecar; `build_transform(meta)` rebuilds
the exact pipeline from it, so the CLI and the app never guess the image size or normalisation. Boxes found on
the network input (a RAMS-Trans crop, a CAM peak) go back to the uploaded image with `input_box_to_original`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from fgvc_core.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PRESETS: dict[str, dict[str, Any]] = {
    # Official RAMS-Trans code: transforms.Resize((600, 600)) -> RandomCrop(448) + flip (train) / CenterCrop(448).
    "rams_trans": {"resize": 600, "img_size": 448, "crop": "center", "resize_mode": "square", "train_crop": "random"},
    # CRA-SMRA paper (Sec. 4.1): "resized to 550 x 550 and cropped to 448 x 448 through the center"; training adds
    # only a random horizontal flip, so the train crop is the centre one too.
    "cra_smra": {"resize": 550, "img_size": 448, "crop": "center", "resize_mode": "square", "train_crop": "center"},
    # Generated benchmark: images are already square, so resize to img_size x img_size and never crop, which
    # would cut off deciding parts near the border. Train adds only a horizontal flip.
    "demo": {"resize": 224, "img_size": 224, "crop": "none", "resize_mode": "square", "train_crop": "center"},
}
"""Named presets: ``resize`` (the side of the resized image), ``img_size`` (network input side), ``crop``
(``"center"``: resize then crop ``img_size``; ``"none"``: plain resize to ``img_size`` x ``img_size``),
``resize_mode`` (``"square"``: both sides to ``resize``, the papers' rule; ``"short_side"``: the short side to
``resize``, aspect kept) and ``train_crop`` (``"random"`` or ``"center"`` crop in training)."""

CROPS = ("center", "none")
RESIZE_MODES = ("square", "short_side")
TRAIN_CROPS = ("random", "center")
INTERPOLATIONS = ("bilinear", "bicubic")
# Sidecars written before these keys existed resized the short side and cropped at random in training.
LEGACY_DEFAULTS = {"resize_mode": "short_side", "train_crop": "random", "interpolation": "bilinear"}


def preprocess_config(
    preset: str,
    img_size: int | None = None,
    resize_mode: str | None = None,
    train_crop: str | None = None,
    resize: int | None = None,
) -> dict[str, Any]:
    """The JSON-able preprocessing description that a checkpoint stores and `build_transform` reads.

    Args:
        preset: A key of `PRESETS`.
        img_size: Network input side; default the preset's. For a cropping preset ``resize`` scales with it
            (rams_trans at 224 resizes to 300), so the crop keeps the same fraction of the image.
        resize_mode: ``"square"`` or ``"short_side"``; default the preset's (``square`` in every preset).
        train_crop: ``"random"`` or ``"center"``; default the preset's.
        resize: the resized side before a crop; default the preset's, scaled with ``img_size`` (the official
            RAMS-Trans Dogs loader, for one, resizes to 448 and crops 224).

    Returns:
        ``{"preset", "resize", "img_size", "crop", "resize_mode", "train_crop", "interpolation", "mean", "std"}``.
    """
    if preset not in PRESETS:
        raise ConfigError(f"preprocess preset must be one of {', '.join(map(repr, PRESETS))}, got {preset!r}")
    base = PRESETS[preset]
    size = base["img_size"] if img_size is None else img_size
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ConfigError(f"img_size must be a positive integer, got {img_size!r}")
    if resize is None:
        resize = size if base["crop"] == "none" else int(round(base["resize"] * size / base["img_size"]))
    elif isinstance(resize, bool) or not isinstance(resize, int) or resize < size:
        raise ConfigError(f"resize must be an integer >= img_size ({size}), got {resize!r}")
    elif base["crop"] == "none" and resize != size:
        raise ConfigError(f"preset {preset!r} does not crop, so resize must equal img_size ({size}), got {resize}")
    resize_mode = base["resize_mode"] if resize_mode is None else _one_of("resize_mode", resize_mode, RESIZE_MODES)
    train_crop = base["train_crop"] if train_crop is None else _one_of("train_crop", train_crop, TRAIN_CROPS)
    return {
        "preset": preset,
        "resize": resize,
        "img_size": size,
        "crop": base["crop"],
        "resize_mode": resize_mode,
        "train_crop": train_crop,
        "interpolation": "bilinear",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def resolve_preprocess(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Return the validated preprocess dict from either itself or a checkpoint meta holding it as ``"preprocess"``.

    Raises:
        ConfigError: Naming the first missing or invalid key.
    """
    if not isinstance(meta, Mapping):
        raise ConfigError(f"preprocess must be a dict, got {type(meta).__name__}")
    if "preprocess" in meta:
        meta = meta["preprocess"]
        if not isinstance(meta, Mapping):
            raise ConfigError(f"meta['preprocess'] must be a dict, got {type(meta).__name__}")
    pp = dict(meta)
    for key in ("resize", "img_size", "crop", "mean", "std"):
        if key not in pp:
            raise ConfigError(f"preprocess is missing key {key!r}")
    for key in ("resize", "img_size"):
        value = pp[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"preprocess[{key!r}] must be a positive integer, got {value!r}")
    if pp["crop"] not in CROPS:
        raise ConfigError(f"preprocess['crop'] must be one of {', '.join(map(repr, CROPS))}, got {pp['crop']!r}")
    if pp["crop"] == "center" and pp["resize"] < pp["img_size"]:
        raise ConfigError(f"preprocess['resize'] ({pp['resize']}) must be >= img_size ({pp['img_size']}) to crop")
    for key, default in LEGACY_DEFAULTS.items():
        pp.setdefault(key, default)
    for key, choices in (("resize_mode", RESIZE_MODES), ("train_crop", TRAIN_CROPS), ("interpolation", INTERPOLATIONS)):
        _one_of(f"preprocess[{key!r}]", pp[key], choices)
    for key in ("mean", "std"):
        value = pp[key]
        ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        if not ok or (key == "std" and min(value) <= 0):
            rule = "three positive numbers" if key == "std" else "three numbers"
            raise ConfigError(f"preprocess[{key!r}] must be {rule}, got {value!r}")
        pp[key] = [float(v) for v in value]
    return pp


def _one_of(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def build_transform(meta: Mapping[str, Any], train: bool = False) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> normalised float tensor (C, H, W), exactly as the checkpoint was trained/evaluated.

    Args:
        meta: A `preprocess_config` dict, or a checkpoint meta dict holding one under ``"preprocess"``.
        train: The training pipeline: the ``train_crop`` (random or centre) + horizontal flip (``crop="center"``)
            or flip only (``crop="none"``), instead of the deterministic test pipeline.
    """
    pp = resolve_preprocess(meta)
    interpolation = InterpolationMode(pp["interpolation"])
    size, resize = pp["img_size"], pp["resize"]
    if pp["crop"] == "center":
        # torchvision: Resize(int) scales the short side, Resize((h, w)) both sides (the papers' 600x600/550x550).
        target = (resize, resize) if pp["resize_mode"] == "square" else resize
        steps: list[Callable] = [T.Resize(target, interpolation=interpolation, antialias=True)]
        if train:
            crop = T.RandomCrop(size) if pp["train_crop"] == "random" else T.CenterCrop(size)
            steps += [crop, T.RandomHorizontalFlip()]
        else:
            steps += [T.CenterCrop(size)]
    else:
        steps = [T.Resize((size, size), interpolation=interpolation, antialias=True)]
        steps += [T.RandomHorizontalFlip()] if train else []
    steps += [T.ToTensor(), T.Normalize(pp["mean"], pp["std"])]
    return T.Compose(steps)


def denormalize(tensor: torch.Tensor, preprocess: Mapping[str, Any]) -> torch.Tensor:
    """Undo the normalisation for display: (C, H, W) or (B, C, H, W) -> same shape, clamped to [0, 1]."""
    pp = resolve_preprocess(preprocess)
    if tensor.dim() not in (3, 4) or tensor.shape[-3] != 3:
        raise ConfigError(f"denormalize expects (3, H, W) or (B, 3, H, W), got {tuple(tensor.shape)}")
    shape = (3, 1, 1)
    mean = torch.tensor(pp["mean"], dtype=tensor.dtype, device=tensor.device).view(shape)
    std = torch.tensor(pp["std"], dtype=tensor.dtype, device=tensor.device).view(shape)
    return (tensor * std + mean).clamp(0.0, 1.0)


def eval_geometry(original_size: tuple[int, int], preprocess: Mapping[str, Any]) -> tuple[float, float, int, int]:
    """How the TEST transform maps the original image onto the input: ``(scale_x, scale_y, left, top)``.

    An input pixel coordinate ``u`` (continuous, pixel edges) sits at ``(u + left) * scale_x`` in the original.
    The resized size follows torchvision's rule (``square``: both sides = resize; ``short_side``: short side =
    resize, long side truncated), and the crop offset its ``CenterCrop`` rounding, so the inverse is exact up to
    resampling.
    """
    pp = resolve_preprocess(preprocess)
    width, height = _check_size(original_size)
    if pp["crop"] == "none":
        return width / pp["img_size"], height / pp["img_size"], 0, 0
    size = pp["img_size"]
    if pp["resize_mode"] == "square":
        offset = int(round((pp["resize"] - size) / 2.0))
        return width / pp["resize"], height / pp["resize"], offset, offset
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = pp["resize"], int(pp["resize"] * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    return width / new_w, height / new_h, left, top


def kept_fraction(original_size: tuple[int, int], preprocess: Mapping[str, Any]) -> float:
    """The fraction of the original image's area that the test input shows (1.0 without a crop)."""
    x0, y0, x1, y1 = input_box_to_original(
        (0, 0, *(2 * [resolve_preprocess(preprocess)["img_size"]])), original_size, preprocess
    )
    width, height = _check_size(original_size)
    return (x1 - x0) * (y1 - y0) / (width * height)


def describe_preprocess(preprocess: Mapping[str, Any]) -> str:
    """One sentence for a page or a log: how an image becomes the network input at test time."""
    pp = resolve_preprocess(preprocess)
    size, resize = pp["img_size"], pp["resize"]
    if pp["crop"] == "none":
        return f"resized to {size}x{size} (aspect ratio not kept), no crop"
    if pp["resize_mode"] == "square":
        first = f"resized to {resize}x{resize} (aspect ratio not kept)"
    else:
        first = f"short side resized to {resize} (aspect ratio kept)"
    return f"{first}, then centre-cropped to {size}x{size}"


def input_box_to_original(
    box_xyxy: Sequence[float], original_size: tuple[int, int], preprocess: Mapping[str, Any]
) -> tuple[float, float, float, float]:
    """Map a box on the network input back to the uploaded image (exact inverse of the test transform).

    Args:
        box_xyxy: ``(x0, y0, x1, y1)`` in input pixels (0..img_size).
        original_size: ``(W, H)`` of the original image, as PIL's ``Image.size`` gives it.
        preprocess: The preprocess dict (or a checkpoint meta holding it).

    Returns:
        ``(x0, y0, x1, y1)`` in original-image pixels as floats, clipped to the image.
    """
    x0, y0, x1, y1 = (float(v) for v in _as_box(box_xyxy))
    sx, sy, left, top = eval_geometry(original_size, preprocess)
    width, height = original_size
    return (
        min(max((x0 + left) * sx, 0.0), width),
        min(max((y0 + top) * sy, 0.0), height),
        min(max((x1 + left) * sx, 0.0), width),
        min(max((y1 + top) * sy, 0.0), height),
    )


def original_box_to_input(
    box_xyxy: Sequence[float], original_size: tuple[int, int], preprocess: Mapping[str, Any]
) -> tuple[float, float, float, float]:
    """Map a box on the original image (e.g. a ground-truth part box) onto the test input, clipped to it."""
    x0, y0, x1, y1 = (float(v) for v in _as_box(box_xyxy))
    sx, sy, left, top = eval_geometry(original_size, preprocess)
    size = float(resolve_preprocess(preprocess)["img_size"])
    return (
        min(max(x0 / sx - left, 0.0), size),
        min(max(y0 / sy - top, 0.0), size),
        min(max(x1 / sx - left, 0.0), size),
        min(max(y1 / sy - top, 0.0), size),
    )


def _as_box(box: Sequence[float]) -> list[float]:
    values = box.tolist() if isinstance(box, torch.Tensor) else list(box)
    if len(values) != 4:
        raise ConfigError(f"a box must be (x0, y0, x1, y1), got {len(values)} values")
    return values


def _check_size(original_size: tuple[int, int]) -> tuple[int, int]:
    width, height = original_size
    if width <= 0 or height <= 0:
        raise ConfigError(f"original_size must be a positive (W, H), got {original_size!r}")
    return int(width), int(height)
