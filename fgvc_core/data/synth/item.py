"""Item ``index`` of a benchmark drawn with ``seed``: the one rule shared by the on-disk writer and the stream.

Image ``index`` is rendered from ``np.random.default_rng([seed, index])`` and has label ``index % num_classes``.
So the same (seed, index) gives the same image in ``make_synth`` (any number of workers) and in ``SynthStream``,
any single image can be re-rendered alone, and the seed only changes instances, never what a class means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fgvc_core.data.synth.render import DEFAULT_OPTIONS, InstanceParams, Layout, SynthOptions, render, sample_instance
from fgvc_core.data.synth.render import layout as _layout
from fgvc_core.data.synth.spec import PART_NAMES, ClassAttributes, class_table, deciding_parts
from fgvc_core.errors import ConfigError


@dataclass(frozen=True)
class SynthAnnotation:
    """The ground truth of one generated image (numpy arrays, pixels of the rendered image).

    Attributes:
        label: class index.
        attributes: the part attributes of the class.
        box: ``(x, y, w, h)`` object box.
        parts: ``(P, 3)`` keypoints ``(x, y, visible)`` in ``part_names`` order (CUB's part_locs convention).
        part_boxes: ``(P, 4)`` part boxes ``(x, y, w, h)`` in ``part_names`` order.
        part_names: the part names (``spec.PART_NAMES``).
        deciding_parts: names of the parts that decide the class.
        deciding_boxes: ``(D, 4)`` boxes of the deciding parts, in ``deciding_parts`` order.
    """

    label: int
    attributes: ClassAttributes
    box: np.ndarray
    parts: np.ndarray
    part_boxes: np.ndarray
    part_names: tuple[str, ...]
    deciding_parts: tuple[str, ...]
    deciding_boxes: np.ndarray


def check_seed(seed: int, index: int | None = None) -> None:
    """Seeds and indices are non-negative integers (``default_rng`` needs that)."""
    if int(seed) < 0 or (index is not None and int(index) < 0):
        raise ConfigError(f"synth seed and index must be >= 0, got seed={seed}, index={index}")


def instance_of(seed: int, index: int, options: SynthOptions = DEFAULT_OPTIONS) -> InstanceParams:
    """The class-independent parameters of image ``index`` under ``seed``."""
    check_seed(seed, index)
    return sample_instance(np.random.default_rng([int(seed), int(index)]), options)


def label_of_index(index: int, num_classes: int) -> int:
    """Balanced labels: item ``index`` has class ``index % num_classes``."""
    return int(index) % int(num_classes)


def annotate(lay: Layout, label: int, attrs: ClassAttributes, deciding: list[str]) -> SynthAnnotation:
    """Build the annotation of a rendered layout."""
    part_boxes = np.array([lay.boxes[p] for p in PART_NAMES], dtype=np.float64)
    centres = part_boxes[:, :2] + part_boxes[:, 2:] / 2
    parts = np.concatenate([centres, np.ones((len(PART_NAMES), 1))], axis=1)  # every part is visible (side view)
    deciding_boxes = np.array([lay.boxes[p] for p in deciding], dtype=np.float64).reshape(-1, 4)
    return SynthAnnotation(
        label=label,
        attributes=attrs,
        box=np.array(lay.object_box, dtype=np.float64),
        parts=parts,
        part_boxes=part_boxes,
        part_names=PART_NAMES,
        deciding_parts=tuple(deciding),
        deciding_boxes=deciding_boxes,
    )


def render_item(
    seed: int, index: int, num_classes: int, size: int, options: SynthOptions = DEFAULT_OPTIONS
) -> tuple[np.ndarray, SynthAnnotation]:
    """Render image ``index`` of the benchmark ``seed``: RGB uint8 ``(size, size, 3)`` and its annotation."""
    label = label_of_index(index, num_classes)
    attrs = class_table(num_classes)[label]
    image, lay = render(instance_of(seed, index, options), attrs, size, options)
    return image, annotate(lay, label, attrs, deciding_parts(num_classes))


def annotate_item(
    seed: int, index: int, num_classes: int, size: int, options: SynthOptions = DEFAULT_OPTIONS
) -> SynthAnnotation:
    """The annotation of image ``index`` without drawing it (geometry only, cheap)."""
    label = label_of_index(index, num_classes)
    attrs = class_table(num_classes)[label]
    lay = _layout(instance_of(seed, index, options), attrs, size, options)
    return annotate(lay, label, attrs, deciding_parts(num_classes))
