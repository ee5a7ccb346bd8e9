"""Stanford Dogs in its official layout (torchvision has no loader for it).

Layout (``root``)::

    Images/<wnid>-<breed>/<file>.jpg             e.g. Images/n02085620-Chihuahua/n02085620_5927.jpg
    train_list.mat, test_list.mat                file_list: cell of paths under Images/; labels: 1-based class
    Annotation/<wnid>-<breed>/<file stem>        PASCAL-VOC XML with the dog boxes (optional)

Labels in the .mat lists count the breed folders in sorted order, so the class names are the sorted folder names
of ``Images/`` without their WordNet id; every listed file is checked to sit in the folder of its label.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from fgvc_core.data._base import Box, ImageListDataset
from fgvc_core.data._validate import (
    ImageFolderGuard,
    check_box,
    check_images_exist,
    check_split,
    read_bytes,
    require_dir,
    require_file,
    require_images,
    require_root,
)
from fgvc_core.data.matfile import load_mat, mat_column
from fgvc_core.errors import DatasetError

NAME = "Stanford Dogs"
SPLITS = ("train", "test")


def breed_name(folder: str) -> str:
    """``"n02085620-Chihuahua"`` -> ``"Chihuahua"`` (the WordNet id prefix removed)."""
    head, sep, rest = folder.partition("-")
    return rest if sep and head.startswith("n") and head[1:].isdigit() and rest else folder


class StanfordDogsDataset(ImageListDataset):
    """Stanford Dogs; items are ``(image, label)``, labels 0-based.

    Attributes:
        root: The folder holding ``Images/`` and the ``*_list.mat`` files.
        split: ``"train"`` or ``"test"``.
        class_folders: ``Images/`` sub-folder of each class (``classes`` are these without the WordNet id).
        boxes: The first dog box of each image from ``Annotation/`` as ``(x, y, w, h)`` =
            ``(xmin, ymin, xmax - xmin, ymax - ymin)``, parsed on first use; None without ``Annotation/``.
    """

    def __init__(
        self, root: str | Path, split: str = "train", transform: Callable[[Image.Image], Any] | None = None
    ) -> None:
        self.split = check_split(split, SPLITS, NAME)
        self.root = require_root(root, NAME)
        image_dir = require_dir(self.root / "Images", NAME)
        list_path = require_file(self.root / f"{split}_list.mat", NAME)
        # hidden folders (.ipynb_checkpoints) are no breed: counting one would shift every label by one
        self.class_folders = sorted(p.name for p in image_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.class_folders:
            raise DatasetError(f"{NAME}: {image_dir} has no class folders")

        mat = load_mat(list_path)
        files, labels = mat_column(mat, "file_list", list_path), mat_column(mat, "labels", list_path)
        if len(files) != len(labels):
            raise DatasetError(f"{list_path}: file_list has {len(files)} entries but labels has {len(labels)}")
        require_images(files, split, list_path, NAME)
        guard = ImageFolderGuard(image_dir)
        samples = []
        for n, (rel, raw_label) in enumerate(zip(files, labels), start=1):
            path = guard.join(str(rel), f"{list_path} entry {n}")
            label = _label(raw_label, list_path, n, len(self.class_folders))
            folder = PurePosixPath(str(rel)).parts[0]
            if folder != self.class_folders[label - 1]:
                raise DatasetError(
                    f"{list_path} entry {n}: {rel!r} has label {label}, whose folder is "
                    f"{self.class_folders[label - 1]!r}"
                )
            samples.append((str(path), label - 1))
        check_images_exist([p for p, _ in samples], list_path)
        self._annotation_dir = self.root / "Annotation"
        self._box_cache: dict[int, Box | None] = {}
        super().__init__(samples, [breed_name(f) for f in self.class_folders], transform)

    @property
    def boxes(self) -> list[Box] | None:
        if not self._annotation_dir.is_dir():
            return None
        return [self.box(i) for i in range(len(self))]

    def box(self, index: int) -> Box | None:
        """First dog box of item ``index`` from its XML (None without ``Annotation/``)."""
        if not self._annotation_dir.is_dir():
            return None
        if index not in self._box_cache:
            image_path = Path(self.samples[index][0])
            xml_path = self._annotation_dir / image_path.parent.name / image_path.stem
            self._box_cache[index] = _read_voc_box(xml_path)
        return self._box_cache[index]


def _label(raw: Any, path: Path, n: int, num_classes: int) -> int:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise DatasetError(f"{path} entry {n}: label {raw!r} is not a number") from None
    if not value.is_integer() or not 1 <= value <= num_classes:
        raise DatasetError(f"{path} entry {n}: label {raw!r} is outside 1..{num_classes}")
    return int(value)


def _read_voc_box(path: Path) -> Box:
    """``(x, y, w, h)`` of the first ``<object><bndbox>`` of a PASCAL-VOC XML file."""
    data = read_bytes(path, NAME)
    try:
        box = ET.fromstring(data).find("object/bndbox")
        if box is None:
            raise ValueError("no object/bndbox")
        x0, y0, x1, y1 = (float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
    except (ET.ParseError, ValueError, TypeError):
        raise DatasetError(f"{path}: expected a PASCAL-VOC XML with object/bndbox xmin ymin xmax ymax") from None
    return check_box((x0, y0, x1 - x0, y1 - y0), str(path))
