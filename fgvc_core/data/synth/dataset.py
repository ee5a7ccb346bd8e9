"""Datasets of the generated benchmark: the on-disk copy (CUB layout + extras) and an on-the-fly stream.

- ``SynthDataset`` / ``build_synth_dataset``: a folder written by ``make_synth``, read through the CUB loader, plus
  the synth extras (part boxes, class attributes, deciding parts and their boxes per item).
- ``SynthStream``: renders item i from (seed, i) on demand, so a demo model never sees the same image twice. It
  agrees with the writer: item i of ``SynthStream(seed=s)`` is image ``s<s>_<i>.jpg`` of ``make_synth --seed s``
  (before JPEG; pass ``jpeg_quality`` to get the very pixels the disk copy decodes to).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fgvc_core.data._validate import parse_int, parse_table, require_file, unique_ids
from fgvc_core.data.cub import CUBAnnotation, CUBDataset
from fgvc_core.data.images import load_image
from fgvc_core.data.synth.item import SynthAnnotation, annotate_item, check_seed, render_item
from fgvc_core.data.synth.render import DEFAULT_OPTIONS, SynthOptions
from fgvc_core.data.synth.spec import DEFAULT_NUM_CLASSES, PART_NAMES, ClassAttributes, class_name, class_table
from fgvc_core.data.synth.writer import META_FILE, PART_BOXES_FILE, encode_jpeg
from fgvc_core.errors import ConfigError, DatasetError

NAME = "synth"


@dataclass(frozen=True)
class SynthItemAnnotation(CUBAnnotation):
    """CUB's annotation of one on-disk item plus the synth extras.

    Attributes:
        part_boxes: ``(P, 4)`` float tensor of part boxes ``(x, y, w, h)`` in ``part_names`` order.
        deciding_parts: names of the parts that decide this item's class.
        deciding_boxes: ``(D, 4)`` float tensor, the boxes of ``deciding_parts``.
    """

    part_boxes: torch.Tensor
    deciding_parts: tuple[str, ...]
    deciding_boxes: torch.Tensor


class SynthDataset(CUBDataset):
    """A benchmark folder written by ``make_synth``; items are ``(image, label)`` as in every dataset.

    Attributes:
        meta: the parsed synth_meta.json (generator version, seed, size, class table, options).
        class_attributes: the part attributes of each class, indexed by label.
        class_names: readable class names ("Red crest, barred wing, forked tail").
        deciding_parts: per class, the names of the parts that decide it.
    """

    def __init__(self, root: str | Path, split: str = "train", transform: Callable[[Image.Image], Any] | None = None):
        super().__init__(root, split, transform)
        meta_path = require_file(self.root / META_FILE, NAME)
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
            classes = self.meta["classes"]
            self.class_attributes = [ClassAttributes(**c["attributes"]) for c in classes]
            self.deciding_parts: list[tuple[str, ...]] = [tuple(c["deciding_parts"]) for c in classes]
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{meta_path}: not a synth_meta.json written by make_synth ({exc})") from None
        if len(self.class_attributes) != len(self.classes) or self.part_names is None:
            raise DatasetError(f"{meta_path} does not match classes.txt / parts/parts.txt in {self.root}")
        self.class_names = [class_name(a) for a in self.class_attributes]
        self._part_boxes = self._read_part_boxes()

    def _read_part_boxes(self) -> torch.Tensor:
        path = require_file(self.root / PART_BOXES_FILE, NAME)
        row_of = {image_id: row for row, image_id in enumerate(self.image_ids)}
        boxes = torch.zeros(len(self.image_ids), len(self.part_names), 4)
        parsers = (parse_int, parse_int, float, float, float, float)
        rows = parse_table(path, parsers, "<image_id> <part_id> <x> <y> <w> <h>", NAME)
        unique_ids([(n, ((f[0], f[1]),)) for n, f in rows], path)  # one line per (image, part)
        for line_no, (image_id, part_id, *box) in rows:
            if not 1 <= part_id <= len(self.part_names):
                raise DatasetError(f"{path} line {line_no}: part id {part_id} is not in parts/parts.txt")
            row = row_of.get(image_id)
            if row is not None:  # other split
                boxes[row, part_id - 1] = torch.tensor(box)
        return boxes

    def part_boxes(self, index: int) -> torch.Tensor:
        """``(P, 4)`` part boxes ``(x, y, w, h)`` of item ``index``."""
        return self._part_boxes[index].clone()

    def annotation(self, index: int) -> SynthItemAnnotation:
        """CUB's annotation of item ``index`` plus part boxes, deciding parts and deciding-part boxes."""
        base = super().annotation(index)
        deciding = self.deciding_parts[base.label]
        rows = [self.part_names.index(p) for p in deciding]
        boxes = self._part_boxes[index]
        return SynthItemAnnotation(
            **{f: getattr(base, f) for f in CUBAnnotation.__dataclass_fields__},
            part_boxes=boxes.clone(),
            deciding_parts=deciding,
            deciding_boxes=boxes[rows].clone(),
        )


def build_synth_dataset(
    root: str | Path, split: str = "train", transform: Callable[[Image.Image], Any] | None = None, **options: Any
) -> SynthDataset:
    """The registry's entry for ``build_dataset("synth", root, split, transform)``: a folder from make_synth.

    No extra options exist yet; an unknown one is a ConfigError rather than silently ignored.
    """
    if options:
        raise ConfigError(f"synth dataset takes no options, got {sorted(options)}")
    return SynthDataset(root, split, transform)


class SynthStream(torch.utils.data.Dataset):
    """Map-style dataset that renders item i deterministically from (seed, i); label ``i % num_classes``.

    It holds only plain values, so DataLoader workers pickle it cheaply, and every worker renders the same item
    for the same index. Use a different seed for the training stream than for the held-out disk copy.

    Args:
        num_samples: length of the dataset (an epoch); indices are unbounded in principle.
        num_classes: prefix of the fixed class table.
        size: image side in pixels.
        seed: instance seed.
        transform: applied to the PIL image.
        jpeg_quality: when set, each image goes through a JPEG round trip at this quality, which makes item i
            pixel-identical to the decoded disk copy; default None (the raw render).
        options: generator options.
        offset: item ``i`` is the stream's image ``offset + i``. The trainer shows epoch ``e`` the window
            ``offset = e * num_samples`` (:meth:`window`), so no image is ever seen twice: a fixed set of a few
            thousand images is memorised within a few epochs (see DESIGN's overfitting note).
        setting: a named benchmark setting (``fgvc_core.data.synth.settings``, e.g. ``"hard"``) whose generator
            options replace ``options``; None (default) keeps ``options``.
    """

    def __init__(
        self,
        num_samples: int,
        num_classes: int = DEFAULT_NUM_CLASSES,
        size: int = 224,
        seed: int = 0,
        transform: Callable[[Image.Image], Any] | None = None,
        jpeg_quality: int | None = None,
        options: SynthOptions = DEFAULT_OPTIONS,
        offset: int = 0,
        setting: str | None = None,
    ) -> None:
        check_seed(seed)
        if setting is not None:  # a recipe's data.options.setting: the named preset's generator options
            from fgvc_core.data.synth.settings import get_setting

            if options is not DEFAULT_OPTIONS:
                raise ConfigError("give synth generator options or a setting, not both")
            options = get_setting(setting).options
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ConfigError(f"offset must be an integer >= 0, got {offset!r}")
        self.offset = offset
        self.table = class_table(num_classes)
        self.num_samples, self.num_classes, self.size, self.seed = int(num_samples), num_classes, int(size), seed
        self.transform, self.jpeg_quality, self.options = transform, jpeg_quality, options
        self.classes = [f"{a.crest_colour.capitalize()}_{a.wing_pattern.capitalize()}_{a.tail_shape.capitalize()}"
                        for a in self.table]  # fmt: skip
        self.class_names = [class_name(a) for a in self.table]
        self.part_names = list(PART_NAMES)

    def __len__(self) -> int:
        return self.num_samples

    @property
    def targets(self) -> list[int]:
        return [(self.offset + i) % self.num_classes for i in range(self.num_samples)]

    def window(self, epoch: int, options: SynthOptions | None = None) -> SynthStream:
        """A copy showing the ``epoch``-th window of ``num_samples`` fresh images (labels stay balanced),
        optionally drawn with other generator ``options`` (a curriculum's easier epochs)."""
        copy = object.__new__(SynthStream)
        copy.__dict__.update(self.__dict__, offset=epoch * self.num_samples)
        if options is not None:
            copy.options = options
        return copy

    def _index(self, index: int) -> int:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        return self.offset + index % self.num_samples

    def render(self, index: int) -> tuple[np.ndarray, SynthAnnotation]:
        """RGB uint8 image and annotation of item ``index`` (after the JPEG round trip when configured)."""
        image, ann = render_item(self.seed, self._index(index), self.num_classes, self.size, self.options)
        if self.jpeg_quality is not None:
            # decoded by the same door as the disk copy (load_image), so the pixels match exactly
            image = np.asarray(load_image(encode_jpeg(image, self.jpeg_quality)))
        return image, ann

    def annotation(self, index: int) -> SynthAnnotation:
        """Object box, part keypoints, part boxes and deciding-part boxes of item ``index`` (no drawing)."""
        return annotate_item(self.seed, self._index(index), self.num_classes, self.size, self.options)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, ann = self.render(index)
        pil = Image.fromarray(image)
        return (self.transform(pil) if self.transform is not None else pil), ann.label

    def __repr__(self) -> str:
        n, k = self.num_samples, self.num_classes
        return f"SynthStream(num_samples={n}, classes={k}, size={self.size}, seed={self.seed})"
