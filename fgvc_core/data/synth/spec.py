"""The class table of the generated benchmark: which part attributes define class k.

The table is a constant of the code, never of the seed: class k means the same crest colour, wing pattern and tail
shape under every seed, so a test set drawn with a new seed is a fair held-out set for a model trained on another.
Only small local parts decide the class; body colour, pose, scale, position and background are instance draws that
the class never sees (see ``render.sample_instance``).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

from fgvc_core.errors import ConfigError

GENERATOR_VERSION = "1.0"

# Part names in the order of parts/parts.txt (part id = index + 1).
PART_NAMES: tuple[str, ...] = ("body", "head", "eye", "beak", "crest", "wing", "tail", "legs")

# Attribute -> the part that carries it. These parts are the only ones that can decide a class.
ATTRIBUTE_PART: dict[str, str] = {"crest_colour": "crest", "wing_pattern": "wing", "tail_shape": "tail"}

# Saturated crest colours (RGB). Body colours are kept muted (render.sample_instance) so a crest stays visible on
# any body; the background clutter reuses these colours so that "some red in the image" is no shortcut.
CREST_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "blue": (30, 90, 235),
    "yellow": (250, 210, 0),
    "white": (250, 250, 250),
    "magenta": (215, 35, 215),
}
# Wing patterns: "barred" and "checkered" have the same ink coverage (50%), so a blur or a 4x downscale makes them
# identical grey: the fine pattern is the cue that dies under blur. "spotted" is used only beyond 12 classes.
WING_PATTERNS: tuple[str, ...] = ("barred", "checkered", "spotted")
TAIL_SHAPES: tuple[str, ...] = ("forked", "rounded", "pointed")

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "crest_colour": tuple(CREST_COLOURS),
    "wing_pattern": WING_PATTERNS,
    "tail_shape": TAIL_SHAPES,
}
# The default 12 classes are the full grid of the first values of each attribute: 3 crests x 2 wings x 2 tails.
DEFAULT_NUM_CLASSES = 12


@dataclass(frozen=True)
class ClassAttributes:
    """The part attributes that define one class."""

    crest_colour: str
    wing_pattern: str
    tail_shape: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def replace(self, **changes: str) -> ClassAttributes:
        """Return a copy with some attributes changed (used to re-render an instance with one part changed)."""
        values = {**self.as_dict(), **changes}
        for name, value in changes.items():
            if name not in ATTRIBUTE_VALUES or value not in ATTRIBUTE_VALUES[name]:
                raise ConfigError(f"unknown synth attribute {name}={value!r}")
        return ClassAttributes(**values)


def _all_combinations() -> list[ClassAttributes]:
    """Every attribute combination in the fixed class order: the 3 x 2 x 2 base grid first, then the rest.

    The base grid is ordered so that class k has crest k % 3, wing k % 2 and tail (k // 2) % 2 (a bijection on
    0..11): any prefix of 3 or more classes already varies all three parts, so small test tables stay fine-grained.
    """
    names = list(ATTRIBUTE_VALUES)
    base = [
        ClassAttributes(*(ATTRIBUTE_VALUES[n][i] for n, i in zip(names, (k % 3, k % 2, (k // 2) % 2))))
        for k in range(12)
    ]
    assert len(set(base)) == 12  # the order above must stay a bijection of the 3 x 2 x 2 grid
    rest = [
        ClassAttributes(*combo)
        for combo in itertools.product(*(ATTRIBUTE_VALUES[n] for n in names))
        if ClassAttributes(*combo) not in base
    ]
    return base + rest


_TABLE: tuple[ClassAttributes, ...] = tuple(_all_combinations())
MAX_CLASSES = len(_TABLE)


def class_table(num_classes: int = DEFAULT_NUM_CLASSES) -> list[ClassAttributes]:
    """The attributes of classes 0..num_classes-1 (a prefix of one fixed table, the same under every seed)."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"synth supports 2..{MAX_CLASSES} classes, got {num_classes}")
    return list(_TABLE[:num_classes])


def deciding_parts(num_classes: int = DEFAULT_NUM_CLASSES) -> list[str]:
    """The parts whose attribute differs between some classes of the table: the only parts that decide a class."""
    table = class_table(num_classes)
    return [part for attr, part in ATTRIBUTE_PART.items() if len({getattr(c, attr) for c in table}) > 1]


def class_name(attrs: ClassAttributes) -> str:
    """Human-readable class name, e.g. 'Red crest, barred wing, forked tail'."""
    return f"{attrs.crest_colour.capitalize()} crest, {attrs.wing_pattern} wing, {attrs.tail_shape} tail"


def class_folder(index: int, attrs: ClassAttributes) -> str:
    """CUB-style class folder name, e.g. '001.Red_Barred_Forked'."""
    parts = (attrs.crest_colour, attrs.wing_pattern, attrs.tail_shape)
    return f"{index + 1:03d}." + "_".join(p.capitalize() for p in parts)


def label_of(attrs: ClassAttributes, num_classes: int = DEFAULT_NUM_CLASSES) -> int | None:
    """The class index with these attributes, or None when no class of the table has them."""
    table = class_table(num_classes)
    return table.index(attrs) if attrs in table else None
