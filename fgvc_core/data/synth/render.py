"""Drawing one synthetic "bird": instance draw, geometry (layout) and rasterisation.

The random draw is split in two, so that an instance can be re-rendered with only a part changed:
- *instance* parameters (``InstanceParams``: pose, scale, position, body colour, background, small colour jitter)
  come from ``sample_instance(rng)`` and never see the class;
- *class* parameters are the part attributes of ``spec.ClassAttributes`` (crest colour, wing pattern, tail shape).

The bird is a set of polygons in a canonical frame (facing +x, y down, body length ~0.7 units). One affine map
(flip, rotation, scale, translation) takes them to pixels; the deciding parts get a minimum pixel size so they stay
legible at the smallest object scale. Placement uses an attribute-independent envelope, so changing a part never
moves the rest of the bird.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import cv2
import numpy as np

from fgvc_core.data.synth.background import render_background
from fgvc_core.data.synth.spec import CREST_COLOURS, PART_NAMES, ClassAttributes

_SHIFT = 4
_ONE = 1 << _SHIFT
_OUTLINE = (20, 20, 20)


@dataclass(frozen=True)
class SynthOptions:
    """Generator options; every default is the documented benchmark (recorded in synth_meta.json).

    Attributes:
        scale_range: object (envelope) side as a fraction of the image side.
        max_angle: rotation range in degrees, uniform in [-max_angle, max_angle].
        min_part_frac: minimum size of a deciding part as a fraction of the image side (12 px at 224).
        cell_min_px: smallest wing-pattern cell in pixels (the pattern must survive at 224 px, not under blur).
        cell_frac: wing-pattern cell size in canonical units (cells grow with large objects).
        clutter_shapes: inclusive range of the number of background clutter shapes (fewer = an easier task, e.g.
            for a curriculum; the benchmark default is (8, 22)).
    """

    scale_range: tuple[float, float] = (0.25, 0.9)
    max_angle: float = 25.0
    min_part_frac: float = 12.0 / 224.0
    cell_min_px: float = 3.5
    cell_frac: float = 0.028
    clutter_shapes: tuple[int, int] = (8, 22)


DEFAULT_OPTIONS = SynthOptions()


@dataclass(frozen=True)
class InstanceParams:
    """Everything about one image that is NOT the class. All fields are plain values (picklable, JSON-able)."""

    scale: float
    angle: float
    flip: bool
    pos: tuple[float, float]
    body_rgb: tuple[int, int, int]
    beak_rgb: tuple[int, int, int]
    leg_rgb: tuple[int, int, int]
    ink_rgb: tuple[int, int, int]
    crest_jitter: tuple[int, int, int]
    pattern_phase: tuple[float, float]
    clutter_seed: int


_BEAKS = np.array([[235, 140, 40], [70, 65, 60], [225, 215, 175], [170, 140, 90]], dtype=float)
_LEGS = np.array([[95, 75, 55], [205, 125, 65], [60, 60, 60]], dtype=float)


def _rgb(values: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.round(values), 0, 255))


def sample_instance(rng: np.random.Generator, options: SynthOptions = DEFAULT_OPTIONS) -> InstanceParams:
    """Draw the class-independent parameters of one image (the draw order is fixed: determinism)."""
    scale = float(rng.uniform(*options.scale_range))
    angle = float(rng.uniform(-options.max_angle, options.max_angle))
    flip = bool(rng.random() < 0.5)
    pos = (float(rng.random()), float(rng.random()))
    # Muted body colours (saturation <= 0.45) of any hue: the saturated crest palette stands out on every body.
    h, s, v = rng.random(), rng.uniform(0.08, 0.45), rng.uniform(0.35, 0.8)
    body = _rgb(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    beak = _rgb(_BEAKS[rng.integers(len(_BEAKS))] + rng.uniform(-12, 12, 3))
    legs = _rgb(_LEGS[rng.integers(len(_LEGS))] + rng.uniform(-12, 12, 3))
    ink = _rgb(np.array([240.0, 235.0, 215.0]) + rng.uniform(-15, 15, 3))
    jitter = tuple(int(j) for j in rng.integers(-15, 16, 3))
    phase = (float(rng.random()), float(rng.random()))
    clutter_seed = int(rng.integers(0, 2**63 - 1))
    return InstanceParams(scale, angle, flip, pos, body, beak, legs, ink, jitter, phase, clutter_seed)


def _ellipse(cx: float, cy: float, a: float, b: float, angle: float = 0.0, n: int = 28) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ca, sa = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    x, y = a * np.cos(t), b * np.sin(t)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def _arc_tail() -> np.ndarray:
    t = np.radians(np.linspace(110, 250, 9))
    arc = np.stack([-0.12 + 0.17 * np.cos(t), 0.17 * np.sin(t)], axis=1)
    return np.concatenate([[[0.03, -0.07]], arc, [[0.03, 0.07]]])


# Canonical geometry. Deciding parts are given relative to an anchor, about which they are enlarged when small.
_BODY = _ellipse(0.0, 0.0, 0.34, 0.20)
_BELLY = _ellipse(0.03, 0.08, 0.24, 0.10)
_HEAD = _ellipse(0.33, -0.16, 0.13, 0.13)
_EYE_CENTRE, _EYE_RADIUS = (0.375, -0.19), 0.03
_BEAK = np.array([[0.43, -0.205], [0.58, -0.155], [0.44, -0.105]])
_CREST_ANCHOR = np.array([0.31, -0.26])
_CREST = np.array([[-0.10, 0.04], [-0.16, -0.09], [-0.06, -0.05], [-0.05, -0.18], [0.01, -0.06], [0.06, -0.14],
                   [0.08, 0.03]])  # fmt: skip
_WING_CENTRE, _WING_AXES, _WING_ANGLE = np.array([-0.05, -0.03]), (0.22, 0.105), -10.0
_TAIL_ANCHOR = np.array([-0.28, -0.02])
_TAILS = {
    "forked": np.array([[0.03, -0.07], [-0.28, -0.17], [-0.16, -0.01], [-0.28, 0.15], [0.03, 0.07]]),
    "rounded": _arc_tail(),
    "pointed": np.array([[0.03, -0.07], [-0.16, -0.065], [-0.34, 0.0], [-0.16, 0.065], [0.03, 0.07]]),
}
_TAIL_ENVELOPE = np.concatenate(list(_TAILS.values()))  # every tail shape: placement must not depend on it
_LEG_SEGMENTS = np.array([[[0.02, 0.17], [0.0, 0.37]], [[0.12, 0.15], [0.13, 0.37]],
                          [[0.0, 0.37], [0.07, 0.375]], [[0.13, 0.37], [0.20, 0.375]]])  # fmt: skip
# Characteristic size (canonical units) of each deciding part, for the minimum-size rule.
_PART_SIZE = {"crest": 0.17, "wing": 2 * _WING_AXES[1], "tail": 0.30}


@dataclass
class Layout:
    """The geometry of one rendered bird in pixels: polygons per part and their boxes (x, y, w, h)."""

    size: int
    polys: dict[str, list[np.ndarray]]
    boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    wing_frame: tuple[np.ndarray, np.ndarray, float] = (np.zeros(2), np.array([1.0, 0.0]), 3.0)

    @property
    def object_box(self) -> tuple[float, float, float, float]:
        """Tight box of the whole bird: the union of the part boxes."""
        b = np.array([self.boxes[p] for p in PART_NAMES])
        x0, y0 = b[:, 0].min(), b[:, 1].min()
        return (float(x0), float(y0), float((b[:, 0] + b[:, 2]).max() - x0), float((b[:, 1] + b[:, 3]).max() - y0))


def _grow(pts: np.ndarray, anchor: np.ndarray, m: float) -> np.ndarray:
    return anchor + m * (pts - anchor)


def _leg_quads(thick: float) -> list[np.ndarray]:
    quads = []
    for a, b in _LEG_SEGMENTS:
        d = b - a
        n = np.array([-d[1], d[0]]) / np.linalg.norm(d) * thick / 2
        quads.append(np.array([a + n, b + n, b - n, a - n]))
    return quads


def layout(
    instance: InstanceParams, attrs: ClassAttributes, size: int, options: SynthOptions = DEFAULT_OPTIONS
) -> Layout:
    """Compute the pixel geometry of the bird (no drawing): used by ``render`` and for cheap annotations."""
    theta = np.radians(instance.angle)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    lin = rot @ np.diag([-1.0 if instance.flip else 1.0, 1.0])
    # Scale from the ungrown envelope: its longer side is instance.scale * size.
    ungrown = [_BODY, _HEAD, _BEAK, _CREST_ANCHOR + _CREST, _TAIL_ANCHOR + _TAIL_ENVELOPE, *_leg_quads(0.0)]
    base = np.concatenate(ungrown) @ lin.T
    px = instance.scale * size / float(max(np.ptp(base[:, 0]), np.ptp(base[:, 1])))  # pixels per unit

    min_px = options.min_part_frac * size
    grow = {p: max(1.0, min_px / (s * px)) for p, s in _PART_SIZE.items()}
    wing = _grow(_ellipse(*_WING_CENTRE, *_WING_AXES, _WING_ANGLE), _WING_CENTRE, grow["wing"])
    canon: dict[str, list[np.ndarray]] = {
        "tail": [_grow(_TAIL_ANCHOR + _TAILS[attrs.tail_shape], _TAIL_ANCHOR, grow["tail"])],
        "legs": _leg_quads(max(1.3 / px, 0.022)),
        "body": [_BODY, _BELLY],
        "wing": [wing],
        "crest": [_grow(_CREST_ANCHOR + _CREST, _CREST_ANCHOR, grow["crest"])],
        "head": [_HEAD],
        "eye": [_ellipse(*_EYE_CENTRE, max(_EYE_RADIUS, 1.6 / px), max(_EYE_RADIUS, 1.6 / px), n=12)],
        "beak": [_BEAK],
    }
    # Placement from an attribute-independent envelope (all tail shapes, grown parts): a part change moves nothing.
    tails = _grow(_TAIL_ANCHOR + _TAIL_ENVELOPE, _TAIL_ANCHOR, grow["tail"])
    envelope = np.concatenate([_BODY, _HEAD, _BEAK, wing, canon["crest"][0], *canon["legs"], tails]) @ (px * lin.T)
    lo, hi = envelope.min(0), envelope.max(0)
    free = np.maximum(size - (hi - lo), 0.0)
    offset = -lo + np.asarray(instance.pos) * free + np.where(free > 0, 0.0, (size - (hi - lo)) / 2)
    polys = {p: [q @ (px * lin.T) + offset for q in qs] for p, qs in canon.items()}

    out = Layout(size=size, polys=polys)
    for part in PART_NAMES:
        pts = np.concatenate(polys[part])
        x0, y0 = np.clip(pts.min(0), 0, size)
        x1, y1 = np.clip(pts.max(0), 0, size)
        out.boxes[part] = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
    wing_axis = lin @ np.array([np.cos(np.radians(_WING_ANGLE)), np.sin(np.radians(_WING_ANGLE))])
    cell = max(options.cell_min_px, options.cell_frac * px)
    out.wing_frame = (_WING_CENTRE @ (px * lin.T) + offset, wing_axis, cell)
    return out


def _fixed(poly: np.ndarray) -> np.ndarray:
    return np.round(poly * _ONE).astype(np.int32)


def _fill(img: np.ndarray, polys: list[np.ndarray], colour, outline=_OUTLINE) -> None:
    pts = [_fixed(p) for p in polys]
    cv2.fillPoly(img, pts, colour, cv2.LINE_AA, _SHIFT)
    if outline is not None:
        cv2.polylines(img, pts, True, outline, 1, cv2.LINE_AA, _SHIFT)


def _pattern_fill(img: np.ndarray, poly: np.ndarray, lay: Layout, pattern: str, base, ink, phase) -> None:
    """Fill the wing with its pattern, computed per pixel in the wing's own frame (rotates with the bird)."""
    size = img.shape[0]
    x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + 2, size)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [_fixed(poly - [x0, y0])], 255, cv2.LINE_AA, _SHIFT)
    centre, axis, cell = lay.wing_frame
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    dx, dy = xs - centre[0], ys - centre[1]
    u = (dx * axis[0] + dy * axis[1]) / cell + phase[0]
    v = (dy * axis[0] - dx * axis[1]) / cell + phase[1]
    if pattern == "barred":  # bars across the wing, 50% ink
        on = np.floor(u) % 2 == 0
    elif pattern == "checkered":  # 50% ink: same mean colour as "barred", so blur cannot tell them apart
        on = (np.floor(u) + np.floor(v)) % 2 == 0
    else:  # "spotted"
        on = (u % 2 - 1) ** 2 + (v % 2 - 1) ** 2 < 0.75**2
    colour = np.where(on[..., None], np.asarray(ink, np.float32), np.asarray(base, np.float32))
    alpha = mask[..., None].astype(np.float32) / 255.0
    region = img[y0:y1, x0:x1]
    region[:] = np.round(region * (1 - alpha) + colour * alpha).astype(np.uint8)
    cv2.polylines(img, [_fixed(poly)], True, _OUTLINE, 1, cv2.LINE_AA, _SHIFT)


def _shade(rgb, factor: float) -> tuple[int, int, int]:
    return _rgb(np.asarray(rgb, float) * factor)


def draw(
    lay: Layout, instance: InstanceParams, attrs: ClassAttributes, options: SynthOptions = DEFAULT_OPTIONS
) -> np.ndarray:
    """Rasterise a layout on its background: RGB uint8 (size, size, 3)."""
    img = render_background(lay.size, instance.clutter_seed, tuple(options.clutter_shapes))
    body = instance.body_rgb
    crest = _rgb(np.array(CREST_COLOURS[attrs.crest_colour]) + instance.crest_jitter)
    _fill(img, lay.polys["tail"], _shade(body, 0.75))
    _fill(img, lay.polys["legs"], instance.leg_rgb, outline=None)
    _fill(img, lay.polys["body"][:1], body, outline=_shade(body, 0.45))
    _fill(img, lay.polys["body"][1:], _rgb(np.asarray(body) * 0.7 + 255 * 0.3), outline=None)
    _pattern_fill(img, lay.polys["wing"][0], lay, attrs.wing_pattern, _shade(body, 0.45), instance.ink_rgb,
                  instance.pattern_phase)  # fmt: skip
    _fill(img, lay.polys["crest"], crest)
    _fill(img, lay.polys["head"], body, outline=_shade(body, 0.45))
    _fill(img, lay.polys["eye"], (15, 15, 15), outline=None)
    _fill(img, lay.polys["beak"], instance.beak_rgb)
    return img


def render(
    instance: InstanceParams, attrs: ClassAttributes, size: int, options: SynthOptions = DEFAULT_OPTIONS
) -> tuple[np.ndarray, Layout]:
    """Render one image (RGB uint8) and its geometry from instance and class parameters."""
    lay = layout(instance, attrs, size, options)
    return draw(lay, instance, attrs, options), lay
