"""Stanford Cars in the devkit layout (the folder ``torchvision.datasets.StanfordCars`` reads), parsed here.

We read the .mat files ourselves rather than through torchvision: its reader keeps the samples in a private
attribute, says only "Dataset not found" for a broken folder, and drops the object boxes. The result matches
torchvision's (classes from ``class_names``, samples ``(cars_<split>/<fname>, class - 1)``) and every image path
is checked to stay inside its image folder; decoding goes through `load_image`.

Layout (``root`` holding ``stanford_cars/``, or the ``stanford_cars`` folder itself)::

    stanford_cars/devkit/cars_meta.mat             class_names: 1 x K cell of names
    stanford_cars/devkit/cars_train_annos.mat      annotations: struct bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, fname
    stanford_cars/cars_test_annos_withlabels.mat   annotations: same fields, test split
    stanford_cars/cars_train/<fname>, stanford_cars/cars_test/<fname>
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fgvc_core.data._base import Box, ImageListDataset
from fgvc_core.data._validate import (
    ImageFolderGuard,
    check_box,
    check_images_exist,
    check_split,
    require_dir,
    require_file,
    require_images,
    torchvision_root,
)
from fgvc_core.data.matfile import load_mat, mat_field, mat_records
from fgvc_core.errors import DatasetError

NAME = "Stanford Cars"
SPLITS = ("train", "test")
SUBFOLDER = "stanford_cars"
_BOX_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")


class StanfordCarsDataset(ImageListDataset):
    """Stanford Cars; items are ``(image, label)``, labels 0-based.

    Attributes:
        root: The ``stanford_cars`` folder.
        split: ``"train"`` or ``"test"``.
        boxes: ``(x, y, w, h)`` per item from the .mat boxes: ``(x1, y1, x2 - x1, y2 - y1)`` as stored.
    """

    def __init__(
        self, root: str | Path, split: str = "train", transform: Callable[[Image.Image], Any] | None = None
    ) -> None:
        self.split = check_split(split, SPLITS, NAME)
        self.root = self.find_root(root)
        devkit = require_dir(self.root / "devkit", NAME)
        meta_path = require_file(devkit / "cars_meta.mat", NAME)
        if split == "train":
            annos_path, image_dir = devkit / "cars_train_annos.mat", self.root / "cars_train"
        else:
            annos_path, image_dir = self.root / "cars_test_annos_withlabels.mat", self.root / "cars_test"
        require_file(annos_path, NAME)
        require_dir(image_dir, NAME)

        classes = [str(c) for c in np.atleast_1d(mat_field(load_mat(meta_path), "class_names", meta_path))]
        records = mat_records(load_mat(annos_path), "annotations", ("fname", "class"), annos_path)
        require_images(records, split, annos_path, NAME)
        guard = ImageFolderGuard(image_dir)
        boxes: list[Box] | None = [] if all(f in records[0].dtype.names for f in _BOX_FIELDS) else None
        samples = []
        for n, record in enumerate(records, start=1):
            where = f"{annos_path} annotation {n}"
            label = _as_int(record["class"], annos_path, n, "class")
            if not 1 <= label <= len(classes):
                raise DatasetError(f"{where}: class {label} is outside 1..{len(classes)}")
            samples.append((str(guard.join(str(np.asarray(record["fname"]).squeeze()), where)), label - 1))
            if boxes is not None:
                x1, y1, x2, y2 = (_as_float(record[f], annos_path, n, f) for f in _BOX_FIELDS)
                boxes.append(check_box((x1, y1, x2 - x1, y2 - y1), where))
        check_images_exist([p for p, _ in samples], annos_path)
        super().__init__(samples, classes, transform, boxes=boxes)

    @classmethod
    def find_root(cls, root: str | Path) -> Path:
        """The ``stanford_cars`` folder: ``root/stanford_cars``, or ``root`` when it is that folder."""
        return torchvision_root(root, SUBFOLDER, NAME)


def _as_float(value: Any, path: Path, n: int, field: str) -> float:
    try:
        return float(np.asarray(value).squeeze())
    except (TypeError, ValueError):
        raise DatasetError(f"{path} annotation {n}: field {field!r} is not a number") from None


def _as_int(value: Any, path: Path, n: int, field: str) -> int:
    number = _as_float(value, path, n, field)
    if not number.is_integer():
        raise DatasetError(f"{path} annotation {n}: field {field!r} is not an integer ({number})")
    return int(number)
