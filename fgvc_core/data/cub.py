"""CUB-200-2011 in its official on-disk layout (torchvision has no loader for it).

The generated benchmark (`fgvc_core.data.synth`) writes the same layout with its own part names, so this loader
reads the part list from ``parts/parts.txt`` instead of assuming CUB's 15 parts, and is meant to be subclassed.

Layout (``root`` or ``root/CUB_200_2011``)::

    images/<class folder>/<file>.jpg
    images.txt               <image_id> <path under images/>
    classes.txt              <class_id> <class name>           (1-based ids, e.g. "1 001.Black_footed_Albatross")
    image_class_labels.txt   <image_id> <class_id>
    train_test_split.txt     <image_id> <is_training_image 0|1>
    bounding_boxes.txt       <image_id> <x> <y> <width> <height>           (optional)
    parts/parts.txt          <part_id> <part name>                          (optional, names may hold spaces)
    parts/part_locs.txt      <image_id> <part_id> <x> <y> <visible 0|1>     (optional)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from fgvc_core.data._base import Box, ImageListDataset
from fgvc_core.data._validate import (
    ImageFolderGuard,
    check_box,
    check_images_exist,
    check_split,
    parse_flag,
    parse_int,
    parse_table,
    require_dir,
    require_file,
    require_images,
    require_root,
    unique_ids,
)
from fgvc_core.errors import DatasetError

NAME = "CUB-200-2011"
SPLITS = ("train", "test")
SUBFOLDER = "CUB_200_2011"
_CLASS_PREFIX = re.compile(r"^\d+\.")  # "001.Black_footed_Albatross" -> "Black_footed_Albatross"


@dataclass(frozen=True)
class CUBAnnotation:
    """Everything the CUB files say about one image.

    Attributes:
        image_id: The 1-based id from images.txt.
        path: Absolute image path.
        label: 0-based class label.
        box: ``(x, y, w, h)`` object box in original pixels, or None without bounding_boxes.txt.
        parts: ``(P, 3)`` float tensor of ``(x, y, visible)`` per part in ``part_names`` order, or None without
            ``parts/``. A part absent from part_locs.txt is ``(0, 0, 0)``, i.e. not visible.
    """

    image_id: int
    path: Path
    label: int
    box: Box | None
    parts: torch.Tensor | None


class CUBDataset(ImageListDataset):
    """CUB-200-2011 (or any folder in its layout); items are ``(image, label)``.

    Attributes:
        root: The folder holding ``images.txt`` (``CUB_200_2011`` when the parent was given).
        split: ``"train"`` or ``"test"``.
        image_ids: CUB image id of each item.
        classes: Class names with the numeric ``"NNN."`` prefix removed.
        boxes: ``(x, y, w, h)`` per item, or None when ``bounding_boxes.txt`` is absent.
        part_names: Names from ``parts/parts.txt`` in part-id order, or None when ``parts/`` is absent.
    """

    def __init__(
        self, root: str | Path, split: str = "train", transform: Callable[[Image.Image], Any] | None = None
    ) -> None:
        self.split = check_split(split, SPLITS, NAME)
        self.root = self.find_root(root)
        self.image_dir = require_dir(self.root / "images", NAME)
        classes = self._read_classes()
        ids, paths, labels = self._read_split_samples(len(classes))
        check_images_exist(paths, self.root / "images.txt")
        self.image_ids: list[int] = ids
        super().__init__(list(zip(paths, labels)), classes, transform, boxes=self._read_boxes(ids))
        self.part_names: list[str] | None = None
        self._parts: torch.Tensor | None = None
        self._read_parts()

    # ----------------------------------------------------------------------------------------------- layout
    @classmethod
    def find_root(cls, root: str | Path) -> Path:
        """The folder holding ``images.txt``: ``root`` itself or its ``CUB_200_2011`` child."""
        path = require_root(root, NAME)
        if not (path / "images.txt").exists() and (path / SUBFOLDER).is_dir():
            return path / SUBFOLDER
        return path

    def _read_classes(self) -> list[str]:
        path = self.root / "classes.txt"
        rows = parse_table(path, (parse_int, str), "<class_id> <class_name>", NAME, last_takes_rest=True)
        table = unique_ids(rows, path)
        expected = list(range(1, len(table) + 1))
        if sorted(table) != expected:
            raise DatasetError(f"{path}: class ids must be 1..{len(table)} without gaps")
        return [_CLASS_PREFIX.sub("", table[i][0]) for i in expected]

    def _read_split_samples(self, num_classes: int) -> tuple[list[int], list[str], list[int]]:
        """Join images.txt, image_class_labels.txt and train_test_split.txt; keep this split's images."""
        images_txt = self.root / "images.txt"
        labels_txt = self.root / "image_class_labels.txt"
        split_txt = self.root / "train_test_split.txt"
        image_rows = parse_table(images_txt, (parse_int, str), "<image_id> <image_path>", NAME, last_takes_rest=True)
        images = unique_ids(image_rows, images_txt)
        line_of = {image_id: line_no for line_no, (image_id, _) in image_rows}
        label_rows = parse_table(labels_txt, (parse_int, parse_int), "<image_id> <class_id>", NAME)
        for line_no, (_, class_id) in label_rows:
            if not 1 <= class_id <= num_classes:
                raise DatasetError(f"{labels_txt} line {line_no}: class id {class_id} is outside 1..{num_classes}")
        labels = unique_ids(label_rows, labels_txt)
        splits = unique_ids(
            parse_table(split_txt, (parse_int, parse_flag), "<image_id> <is_training_image 0|1>", NAME), split_txt
        )
        for table, path in ((labels, labels_txt), (splits, split_txt)):
            missing = [i for i in images if i not in table]
            if missing:
                raise DatasetError(f"{path} has no line for image id {missing[0]} (listed in {images_txt})")
        want = 1 if self.split == "train" else 0
        ids = sorted(i for i in images if splits[i][0] == want)
        require_images(ids, self.split, split_txt, NAME)
        guard = ImageFolderGuard(self.image_dir)
        paths = [str(guard.join(images[i][0], f"{images_txt} line {line_of[i]}")) for i in ids]
        return ids, paths, [labels[i][0] - 1 for i in ids]

    def _read_boxes(self, ids: list[int]) -> list[Box] | None:
        path = self.root / "bounding_boxes.txt"
        if not path.exists():
            return None
        parsers = (parse_int, float, float, float, float)
        rows = parse_table(path, parsers, "<image_id> <x> <y> <width> <height>", NAME)
        for line_no, (_, *box) in rows:
            check_box(box, f"{path} line {line_no}")
        table = unique_ids(rows, path)
        missing = [i for i in ids if i not in table]
        if missing:
            raise DatasetError(f"{path} has no box for image id {missing[0]}")
        return [table[i] for i in ids]

    def _read_parts(self) -> None:
        """Fill ``part_names`` and the (N, P, 3) part tensor when ``parts/`` exists."""
        parts_dir = self.root / "parts"
        if not parts_dir.exists():
            return
        names_txt = require_file(parts_dir / "parts.txt", NAME)
        locs_txt = require_file(parts_dir / "part_locs.txt", NAME)
        names = unique_ids(parse_table(names_txt, (parse_int, str), "<part_id> <part_name>", NAME, True), names_txt)
        part_ids = sorted(names)
        if part_ids != list(range(1, len(part_ids) + 1)):
            raise DatasetError(f"{names_txt}: part ids must be 1..{len(part_ids)} without gaps")
        row_of = {image_id: row for row, image_id in enumerate(self.image_ids)}
        locs = torch.zeros(len(self.image_ids), len(part_ids), 3)
        parsers = (parse_int, parse_int, float, float, parse_flag)
        for line_no, (image_id, part_id, x, y, visible) in parse_table(
            locs_txt, parsers, "<image_id> <part_id> <x> <y> <visible 0|1>", NAME
        ):
            if part_id not in names:
                raise DatasetError(f"{locs_txt} line {line_no}: part id {part_id} is not in {names_txt}")
            if not (math.isfinite(x) and math.isfinite(y) and x >= 0 and y >= 0):
                raise DatasetError(f"{locs_txt} line {line_no}: part location ({x:g}, {y:g}) must be finite and >= 0")
            row = row_of.get(image_id)
            if row is not None:  # other split
                locs[row, part_id - 1] = torch.tensor((x, y, float(visible)))
        self.part_names = [names[i][0] for i in part_ids]
        self._parts = locs

    # --------------------------------------------------------------------------------------------- access
    @property
    def has_parts(self) -> bool:
        return self._parts is not None

    def part_locations(self, index: int) -> torch.Tensor:
        """``(P, 3)`` float tensor of ``(x, y, visible)`` for item ``index``, in ``part_names`` order.

        Raises:
            DatasetError: The folder has no ``parts/`` annotations.
        """
        if self._parts is None:
            raise DatasetError(f"{NAME}: no part annotations in {self.root} (parts/parts.txt, parts/part_locs.txt)")
        return self._parts[index].clone()

    def annotation(self, index: int) -> CUBAnnotation:
        """Image id, path, label, box and parts of item ``index`` (box/parts None where the files are absent)."""
        path, label = self.samples[index]
        parts = None if self._parts is None else self._parts[index].clone()
        return CUBAnnotation(self.image_ids[index], Path(path), label, self.box(index), parts)
