"""Stanford Cars in the devkit layout, read by ``torchvision.datasets.StanfordCars``.

torchvision reads the layout (classes and samples); this wrapper validates the folder first (torchvision only
says "Dataset not found"), decodes through `load_image`, and adds the object boxes, which torchvision drops.

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
from torchvision.datasets import StanfordCars

from fgvc_core.data._base import Box, ImageListDataset
from fgvc_core.data._validate import check_images_exist, check_split, require_dir, require_file, torchvision_root
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

        num_classes = len(np.atleast_1d(mat_field(load_mat(meta_path), "class_names", meta_path)))
        records = mat_records(load_mat(annos_path), "annotations", ("fname", "class"), annos_path)
        boxes: list[Box] | None = [] if records and all(f in records[0].dtype.names for f in _BOX_FIELDS) else None
        for n, record in enumerate(records, start=1):
            label = _as_int(record["class"], annos_path, n, "class")
            if not 1 <= label <= num_classes:
                raise DatasetError(f"{annos_path} annotation {n}: class {label} is outside 1..{num_classes}")
            if boxes is not None:
                x1, y1, x2, y2 = (float(np.asarray(record[f]).squeeze()) for f in _BOX_FIELDS)
                boxes.append((x1, y1, x2 - x1, y2 - y1))
        check_images_exist([image_dir / str(np.asarray(r["fname"]).squeeze()) for r in records], annos_path)

        try:
            tv = StanfordCars(str(self.root.parent), split=split, download=False)
        except Exception as exc:  # the checks above should make this unreachable; never leak a raw error
            raise DatasetError(f"{NAME}: torchvision could not read {self.root} ({exc})") from None
        samples = tv._samples  # torchvision keeps (path, 0-based label) here; there is no public accessor
        if len(samples) != len(records):
            raise DatasetError(f"{annos_path}: torchvision read {len(samples)} samples, expected {len(records)}")
        super().__init__(samples, [str(c) for c in tv.classes], transform, boxes=boxes)

    @classmethod
    def find_root(cls, root: str | Path) -> Path:
        """The ``stanford_cars`` folder: ``root/stanford_cars``, or ``root`` when it is that folder."""
        return torchvision_root(root, SUBFOLDER, NAME)


def _as_int(value: Any, path: Path, n: int, field: str) -> int:
    try:
        number = float(np.asarray(value).squeeze())
    except (TypeError, ValueError):
        raise DatasetError(f"{path} annotation {n}: field {field!r} is not a number") from None
    if not number.is_integer():
        raise DatasetError(f"{path} annotation {n}: field {field!r} is not an integer ({number})")
    return int(number)
