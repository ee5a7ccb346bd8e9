"""FGVC-Aircraft 2013b (the folder ``torchvision.datasets.FGVCAircraft`` reads), parsed here, all label levels at once.

We parse the text files ourselves rather than through torchvision: its reader keeps paths and labels in private
attributes, raises a KeyError on an unknown class name and reads one level per instance. The result matches
torchvision's (classes from ``<level>s.txt``, samples ``(data/images/<id>.jpg, label)`` in file order); every
level the folder has is read so a page can switch between variant, family and manufacturer without reloading,
and the boxes come from ``images_box.txt``.

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

from fgvc_core.data._base import Box, ImageListDataset
from fgvc_core.data._validate import (
    ImageFolderGuard,
    check_box,
    check_choice,
    check_images_exist,
    check_split,
    parse_table,
    read_lines,
    read_text,
    require_dir,
    require_images,
    split_lines,
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
        line_of: dict[str, int] = {}
        for level in present:
            self.levels[level] = _read_classes(data / _CLASS_FILES[level])
            labels_path = data / f"images_{level}_{split}.txt"
            if level != annotation_level and not labels_path.exists():
                del self.levels[level]  # a level without this split's labels is simply not offered
                continue
            rows = _read_labels(labels_path, self.levels[level])
            if level == annotation_level:
                order, line_of = [i for _, i, _ in rows], {i: n for n, i, _ in rows}
            per_level[level] = {i: label for _, i, label in rows}
        listed_in = data / f"images_{annotation_level}_{split}.txt"
        require_images(order, split, listed_in, NAME)
        for level, table in per_level.items():
            if set(table) != set(order):
                odd = sorted(set(table) ^ set(order))[0]
                raise DatasetError(
                    f"{data / f'images_{level}_{split}.txt'} and images_{annotation_level}_{split}.txt "
                    f"list different images (e.g. {odd})"
                )
        guard = ImageFolderGuard(image_dir)
        paths = [str(guard.join(f"{i}.jpg", f"{listed_in} line {line_of[i]}")) for i in order]
        check_images_exist(paths, listed_in)
        self.image_ids: list[str] = order
        self.level_labels: dict[str, list[int]] = {lvl: [t[i] for i in order] for lvl, t in per_level.items()}
        samples = list(zip(paths, self.level_labels[annotation_level]))
        boxes = _read_boxes(data / "images_box.txt", order)
        super().__init__(samples, self.levels[annotation_level], transform, boxes=boxes)

    @classmethod
    def find_root(cls, root: str | Path) -> Path:
        """The ``fgvc-aircraft-2013b`` folder: ``root/fgvc-aircraft-2013b``, or ``root`` when it is that folder."""
        return torchvision_root(root, SUBFOLDER, NAME)


def _read_classes(path: Path) -> list[str]:
    names = [line.strip() for line in split_lines(read_text(path, NAME))]
    for n, name in enumerate(names, start=1):
        if not name:
            raise DatasetError(f"{path} line {n}: blank line (expected one class name per line)")
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: a class name appears twice")
    return names


def _read_labels(path: Path, classes: list[str]) -> list[tuple[int, str, int]]:
    """``(line number, image id, 0-based label)`` per line of ``images_<level>_<split>.txt``."""
    index = {name: i for i, name in enumerate(classes)}
    rows = []
    for n, line in read_lines(path, NAME):
        parts = line.split(" ", 1)
        if len(parts) != 2 or not parts[0] or not parts[1].strip():
            raise DatasetError(f"{path} line {n}: expected '<image_id> <class name>', got {line!r}")
        name = parts[1].strip()
        if name not in index:
            raise DatasetError(f"{path} line {n}: class {name!r} is not in {path.parent / _class_file(path)}")
        rows.append((n, parts[0], index[name]))
    if len({image_id for _, image_id, _ in rows}) != len(rows):
        raise DatasetError(f"{path}: an image id appears twice")
    return rows


def _class_file(labels_path: Path) -> str:
    level = labels_path.stem.split("_")[1]
    return _CLASS_FILES.get(level, "?")


def _read_boxes(path: Path, ids: list[str]) -> list[Box] | None:
    if not path.exists():
        return None
    parsers = (str, float, float, float, float)
    rows = parse_table(path, parsers, "<image_id> <xmin> <ymin> <xmax> <ymax>", NAME)
    checked = []
    for n, (image_id, x0, y0, x1, y1) in rows:  # the file stores corners; a box needs x1 > x0, y1 > y0
        checked.append((n, (image_id, check_box((x0, y0, x1 - x0, y1 - y0), f"{path} line {n}"))))
    table = unique_ids(checked, path)
    missing = [i for i in ids if i not in table]
    if missing:
        raise DatasetError(f"{path} has no box for image id {missing[0]}")
    return [table[i][0] for i in ids]
