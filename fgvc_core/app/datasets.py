"""The dataset the sidebar picks images from: a loader name, a root a visitor types (confined), and a split.

Every root goes through :func:`fgvc_core.app.allowed.confine` with the data roots before anything is read, so a
path outside them gets the uniform "not available here" and the page never tells what the server holds. Inside
the roots, the loader's own one-line ``DatasetError`` says what is wrong with the layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

import fgvc_core
from fgvc_core.app.allowed import allowed_roots, confine
from fgvc_core.app.images import ImageChoice
from fgvc_core.app.settings import REPO_ROOT, display_path
from fgvc_core.errors import DatasetError, FGVCError

DATASET_NAMES: tuple[str, ...] = ("synth", "cub", "cars", "aircraft", "dogs", "folder")
DATASET_TITLES = {
    "synth": "Generated benchmark (synth)",
    "cub": "CUB-200-2011",
    "cars": "Stanford Cars",
    "aircraft": "FGVC-Aircraft",
    "dogs": "Stanford Dogs",
    "folder": "Class folders",
}
SPLITS: dict[str, tuple[str, ...]] = {
    "synth": ("test", "train"),
    "cub": ("test", "train"),
    "cars": ("test", "train"),
    "aircraft": ("test", "val", "trainval", "train"),
    "dogs": ("test", "train"),
    "folder": ("test", "val", "train"),
}

# A checkpoint trained on the synth stream is tested on the written benchmark at the same root.
TRAINED_ON = {"synth_stream": "synth"}


@dataclass(frozen=True)
class DatasetChoice:
    """A dataset the app may read: loader name, resolved root (inside the data roots) and split."""

    name: str
    root: Path
    split: str

    @property
    def key(self) -> str:
        """Identity in image keys and evaluation caches."""
        return f"{self.name}:{self.root}:{self.split}"

    @property
    def label(self) -> str:
        return f"{DATASET_TITLES.get(self.name, self.name)} · {display_path(self.root)} · {self.split}"


def choose_dataset(name: str, root_text: str, split: str) -> DatasetChoice:
    """Check the sidebar's three values, the root confined to the data roots before any file is looked at.

    Raises:
        DatasetError: an unknown loader, an empty root or a split the loader does not have.
        PathNotAvailable: the root resolves outside the data roots (the same message whatever it is).
    """
    if name not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    raw = str(root_text).strip().strip("'\"")
    if not raw:
        raise DatasetError(f"type the root folder of the {DATASET_TITLES[name]} dataset")
    root = confine(raw, allowed_roots().data, REPO_ROOT)
    if split not in SPLITS[name]:
        raise DatasetError(f"{name} has no split {split!r}; choose one of {', '.join(SPLITS[name])}")
    return DatasetChoice(name, root, split)


@st.cache_resource(max_entries=8, show_spinner="Reading the dataset…")
def _open(name: str, root: str, split: str) -> Any:
    return fgvc_core.build_dataset(name, root, split)


def open_dataset(choice: DatasetChoice) -> Any:
    """The dataset (untransformed PIL items), shared read-only by every session.

    Raises:
        DatasetError / ConfigError: the folder does not hold that layout (the loader's one-line message).
    """
    if not choice.root.is_dir():
        raise DatasetError(f"{display_path(choice.root)} is not a folder")
    dataset = _open(choice.name, str(choice.root), choice.split)
    if len(dataset) == 0:
        raise DatasetError(f"the {choice.split} split of {display_path(choice.root)} has no images")
    return dataset


@dataclass(frozen=True)
class GroundTruth:
    """What a dataset says about one image's object and parts, in the image's own pixels.

    Attributes:
        object_box: ``(x, y, w, h)`` or None.
        part_boxes: deciding part boxes ``(D, 4)`` xywh (synth), or None.
        keypoints: visible part keypoints ``(P, 2)`` xy (CUB), or None.
        keypoint_names: their names, aligned with ``keypoints``.
    """

    object_box: tuple[float, float, float, float] | None = None
    part_boxes: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    keypoint_names: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.object_box is None and self.part_boxes is None and self.keypoints is None


def ground_truth(dataset: Any, index: int) -> GroundTruth:
    """The object box, synth part boxes and CUB keypoints of item ``index`` (each None where the set lacks it)."""
    box = dataset.box(index) if hasattr(dataset, "box") else None
    obj = None if box is None else tuple(float(v) for v in box)
    if not hasattr(dataset, "annotation"):
        return GroundTruth(obj)
    ann = dataset.annotation(index)
    part_boxes = getattr(ann, "deciding_boxes", None)
    part_boxes = None if part_boxes is None else np.asarray(part_boxes, dtype=np.float64).reshape(-1, 4)
    keypoints, names = None, ()
    parts = getattr(ann, "parts", None)
    if part_boxes is None and parts is not None:
        parts = np.asarray(parts, dtype=np.float64)
        visible = parts[:, 2] > 0
        keypoints = parts[visible, :2]
        all_names = list(getattr(dataset, "part_names", None) or [f"part {i + 1}" for i in range(len(parts))])
        names = tuple(n for n, v in zip(all_names, visible) if v)
    return GroundTruth(obj, part_boxes, keypoints, names)


def dataset_image(choice: DatasetChoice, dataset: Any, index: int) -> ImageChoice:
    """Item ``index`` of ``dataset`` as the image the pages explain (with its true class and deciding parts)."""
    if not 0 <= index < len(dataset):
        raise DatasetError(f"image #{index} is not in the {choice.split} split ({len(dataset)} images)")
    image = dataset.load(index)
    label = int(dataset.samples[index][1])
    name = dataset.classes[label]
    truth = ground_truth(dataset, index)
    return ImageChoice(
        image,
        f"data:{choice.key}:{index}",
        f"{name} · #{index}",
        label,
        name,
        deciding_parts(dataset, index),
        object_box=truth.object_box,
    )


def deciding_parts(dataset: Any, index: int) -> np.ndarray | None:
    """The part boxes ``(D, 4)`` xywh the explanation metrics score against (synth parts, CUB keypoint squares)."""
    from fgvc_core.explain.scoring.evaluation import ground_truth_boxes

    try:
        return ground_truth_boxes(dataset, index)[0]
    except (FGVCError, TypeError, ValueError):  # no annotations, or no object box to size CUB's squares
        return None


def class_mismatch(dataset_classes: Sequence[str], model_classes: Sequence[str], model_title: str) -> str | None:
    """A one-line warning when the dataset's classes are not the checkpoint's, naming both counts; else None."""
    if list(dataset_classes) == list(model_classes):
        return None
    common = len(set(dataset_classes) & set(model_classes))
    return (
        f"This dataset has {len(dataset_classes)} classes and the {model_title} checkpoint {len(model_classes)} "
        f"({common} names in common): its predictions are in the checkpoint's classes, and right/wrong is judged "
        "by class name."
    )


def checkpoint_dataset(meta: dict[str, Any]) -> tuple[str, str, str] | None:
    """``(name, root, test split)`` of the data a checkpoint was trained on, when it is a loader the picker has."""
    data = meta.get("dataset") or {}
    name, root = TRAINED_ON.get(data.get("name"), data.get("name")), data.get("root")
    if name not in DATASET_NAMES or not isinstance(root, str) or not root:
        return None
    split = data.get("test_split") if data.get("test_split") in SPLITS[name] else "test"
    return name, root, split
