"""FGVC-Aircraft 2013b, read by ``torchvision.datasets.FGVCAircraft``, with all three label levels at once.

torchvision reads one annotation level per instance; this wrapper validates the folder first (torchvision raises
a KeyError on an unknown class name), reads every level the folder has so a page can switch between variant,
family and manufacturer without reloading, and adds the boxes from ``images_box.txt``.

Layout (``root`` holding ``fgvc-aircraft-2013b/``, or that folder itself)::

    fgvc-aircraft-2013b/data/images/<image_id>.jpg
    fgvc-aircraft-2013b/data/variants.txt | families.txt | manufacturers.txt     one class name per line
    fgvc-aircraft-2013b/data/images_<level>_<split>.txt                           <image_id> <class name>
    fgvc-aircraft-2013b/data/images_box.txt                                       <image_id> <xmin> <ymin> <xmax> <ymax>
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torchvision.datasets import FGVCAircraft

from fgvc_core.data._base import Box, ImageListDataset
from fgvc_core.data._validate import (
    check_choice,
    check_images_exist,
    check_split,
    parse_table,
    read_lines,
    require_dir,
    require_file,
    torchvision_root,
    unique_ids,
)
from fgvc_core.errors import DatasetError

NAME = "FGVC-Aircraft"
SPLITS = ("train", "val", "trainval", "test")
LEVELS = ("variant", "family", "manufacturer")
SUBFOLDER = "fgvc-aircraft-2013b"
_CLASS_FILES = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}


class AircraftDataset(ImageListDataset):
    """FGVC-Aircraft; items are ``(image, label)`` with the label of ``annotation_level``.

    Attributes:
        root: The ``fgvc-aircraft-2013b`` folder.
        split: ``"train"``, ``"val"``, ``"trainval"`` or ``"test"``.
        annotation_level: The level of ``classes`` and of the item labels.
        levels: ``{level: class names}`` for every level whose files exist (always the chosen one).
        level_labels: ``{level: one 0-based label per item}``, aligned with ``samples``.
        image_ids: Aircraft image id (a string, leading zeros kept) per item.
        boxes: ``(x, y, w, h)`` per item from ``images_box.txt`` (``xmin, ymin, xmax - xmin, ymax - ymin``),
            or None when that file is absent.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        transform: Callable[[Image.Image], Any] | None = None,
        annotation_level: str = "variant",
    ) -> None:
        self.split = check_split(split, SPLITS, NAME)
        self.annotation_level = check_choice(annotation_level, LEVELS, "annotation_level")
        self.root = self.find_root(root)
        data = require_dir(self.root / "data", NAME)
        image_dir = require_dir(data / "images", NAME)

        present = [lvl for lvl in LEVELS if (data / _CLASS_FILES[lvl]).exists() or lvl == annotation_level]
        self.levels: dict[str, list[str]] = {}
        per_level: dict[str, dict[str, int]] = {}
        order: list[str] = []
        for level in present:
            self.levels[level] = _read_classes(data / _CLASS_FILES[level])
            labels_path = data / f"images_{level}_{split}.txt"
            if level != annotation_level and not labels_path.exists():
                del self.levels[level]  # a level without this split's labels is simply not offered
                continue
            ids, labels = _read_labels(labels_path, self.levels[level])
            if level == annotation_level:
                order = ids
            per_level[level] = dict(zip(ids, labels))
        for level, table in per_level.items():
            if set(table) != set(order):
                odd = sorted(set(table) ^ set(order))[0]
                raise DatasetError(
                    f"{data / f'images_{level}_{split}.txt'} and images_{annotation_level}_{split}.txt "
                    f"list different images (e.g. {odd})"
                )
        check_images_exist([image_dir / f"{i}.jpg" for i in order], data / f"images_{annotation_level}_{split}.txt")

        try:
            tv = FGVCAircraft(str(self.root.parent), split=split, annotation_level=annotation_level, download=False)
        except Exception as exc:  # the checks above should make this unreachable; never leak a raw error
            raise DatasetError(f"{NAME}: torchvision could not read {self.root} ({exc})") from None
        # torchvision keeps paths and labels in private lists; there is no public accessor.
        samples = list(zip(tv._image_files, tv._labels))
        if [Path(p).stem for p, _ in samples] != order:
            raise DatasetError(f"{NAME}: torchvision read a different image list from {self.root}")
        self.image_ids: list[str] = order
        self.level_labels: dict[str, list[int]] = {lvl: [t[i] for i in order] for lvl, t in per_level.items()}
        super().__init__(samples, list(tv.classes), transform, boxes=_read_boxes(data / "images_box.txt", order))

    @classmethod
    def find_root(cls, root: str | Path) -> Path:
        """The ``fgvc-aircraft-2013b`` folder: ``root/fgvc-aircraft-2013b``, or ``root`` when it is that folder."""
        return torchvision_root(root, SUBFOLDER, NAME)


def _read_classes(path: Path) -> list[str]:
    require_file(path, NAME)
    try:
        text = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise DatasetError(f"{path} cannot be read as UTF-8 text") from None
    names = [line.strip() for line in text]
    for n, name in enumerate(names, start=1):
        if not name:
            raise DatasetError(f"{path} line {n}: blank line (expected one class name per line)")
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: a class name appears twice")
    return names


def _read_labels(path: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    index = {name: i for i, name in enumerate(classes)}
    ids, labels = [], []
    for n, line in read_lines(path, NAME):
        parts = line.split(" ", 1)
        if len(parts) != 2 or not parts[0] or not parts[1].strip():
            raise DatasetError(f"{path} line {n}: expected '<image_id> <class name>', got {line!r}")
        name = parts[1].strip()
        if name not in index:
            raise DatasetError(f"{path} line {n}: class {name!r} is not in {path.parent / _class_file(path)}")
        ids.append(parts[0])
        labels.append(index[name])
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: an image id appears twice")
    return ids, labels


def _class_file(labels_path: Path) -> str:
    level = labels_path.stem.split("_")[1]
    return _CLASS_FILES.get(level, "?")


def _read_boxes(path: Path, ids: list[str]) -> list[Box] | None:
    if not path.exists():
        return None
    parsers = (str, float, float, float, float)
    table = unique_ids(parse_table(path, parsers, "<image_id> <xmin> <ymin> <xmax> <ymax>", NAME), path)
    missing = [i for i in ids if i not in table]
    if missing:
        raise DatasetError(f"{path} has no box for image id {missing[0]}")
    return [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in (table[i] for i in ids)]
