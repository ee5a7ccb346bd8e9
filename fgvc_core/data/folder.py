"""A user's own images: one sub-folder per class, as torchvision's ``ImageFolder`` reads them.

``root/<split>/<class>/*.jpg`` when ``root/<split>`` exists, else ``root/<class>/*.jpg``. Class discovery and
the file walk are torchvision's (``find_classes``, ``make_dataset``); decoding goes through `load_image`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from fgvc_core.data._base import ImageListDataset
from fgvc_core.data._validate import check_split, require_root
from fgvc_core.errors import DatasetError

NAME = "image folder"
SPLITS = ("train", "val", "test")


class FolderDataset(ImageListDataset):
    """One sub-folder per class; items are ``(image, label)``, labels in sorted folder-name order.

    Attributes:
        root: The folder whose sub-folders are the classes (``root/<split>`` when that exists).
        split: The split asked for (``"train"``, ``"val"`` or ``"test"``).
        boxes: Always None (a plain folder has no boxes).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        extensions: tuple[str, ...] = IMG_EXTENSIONS,
    ) -> None:
        self.split = check_split(split, SPLITS, NAME)
        base = require_root(root, NAME)
        split_dirs = [s for s in SPLITS if (base / s).is_dir()]
        if split_dirs and split not in split_dirs:
            # root/<split>/ layout without this split: falling back to root would turn "train" into a class
            raise DatasetError(f"{NAME}: {base} has split folders {split_dirs} but no {split!r} folder")
        self.root = base / split if split_dirs else base
        try:
            classes, class_to_idx = find_classes(str(self.root))
        except FileNotFoundError:
            raise DatasetError(
                f"{NAME}: {self.root} has no class sub-folders (expected <class>/<image> files)"
            ) from None
        empty = [c for c in classes if not _has_image(self.root / c, extensions)]
        if empty:
            exts = ", ".join(extensions)
            raise DatasetError(f"{NAME}: class folder {self.root / empty[0]} has no image files ({exts})")
        samples = make_dataset(str(self.root), class_to_idx, extensions=extensions)
        super().__init__(samples, classes, transform)


def _has_image(folder: Path, extensions: tuple[str, ...]) -> bool:
    lowered = tuple(e.lower() for e in extensions)
    return any(p.is_file() and p.name.lower().endswith(lowered) for p in folder.rglob("*"))
