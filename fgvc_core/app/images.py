"""The image the pages explain: a benchmark sample from the gallery or a user upload, both through ``load_image``.

An image is identified by a key (the SHA-1 of an upload's bytes, or the benchmark path and index), which the
per-session caches use, so the same picture uploaded twice is traced once.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

import fgvc_core
from fgvc_core.app.settings import IMAGE_TYPES, UPLOAD_KINDS
from fgvc_core.errors import ImageError


@dataclass(frozen=True)
class ImageChoice:
    """One image and what is known about it.

    Attributes:
        image: RGB PIL image as ``load_image`` returns it.
        key: cache identity of the image.
        name: what the page calls it (file name, or ``class · #index``).
        label: the true class index for a benchmark sample, else None.
        label_name: the true class name, else None.
        part_boxes: the deciding part boxes ``(D, 4)`` xywh in image pixels, for benchmark samples.
        object_box: the object's box ``(x, y, w, h)`` in image pixels, where the dataset has one (CUB, Aircraft).
        n_frames: frames in the file (an animation shows frame 0 only); 1 for a still image.
    """

    image: Image.Image = field(repr=False)
    key: str
    name: str
    label: int | None = None
    label_name: str | None = None
    part_boxes: np.ndarray | None = field(default=None, repr=False)
    object_box: tuple[float, float, float, float] | None = None
    n_frames: int = 1


@st.cache_resource(max_entries=4, show_spinner=False)
def gallery(root: str) -> Any:
    """The benchmark's test split (read-only, shared by all sessions)."""
    return fgvc_core.build_dataset("synth", root, "test")


def gallery_order(dataset: Any, per_class: int = 5) -> list[int]:
    """Gallery indices: the first ``per_class`` test images of every class, interleaved class by class."""
    by_class: dict[int, list[int]] = {}
    for index, (_, label) in enumerate(dataset.samples):
        if len(by_class.setdefault(label, [])) < per_class:
            by_class[label].append(index)
    order = []
    for rank in range(per_class):
        order += [items[rank] for _, items in sorted(by_class.items()) if rank < len(items)]
    return order


def benchmark_image(root: Path, index: int) -> ImageChoice:
    """Sample ``index`` of the benchmark's test split at ``root``.

    Raises:
        DatasetError: the folder is not a benchmark written by ``make_synth``.
    """
    dataset = gallery(str(root))
    image, label = dataset[index]
    try:
        boxes = dataset.annotation(index).deciding_boxes.numpy()
    except (AttributeError, ValueError):
        boxes = None
    name = dataset.classes[label]
    return ImageChoice(image, f"bench:{root}:{index}", f"{name} · #{index}", label, name, boxes)


def check_upload_name(file_name: str) -> None:
    """Refuse an upload whose name is not one of the image types the app reads, before its bytes are decoded.

    The uploader accepts any file (a ``type=`` list makes Streamlit raise while it restores the widget, before the
    page runs, and the page would show Streamlit's exception instead of a message), so the suffix is checked here.

    Raises:
        ImageError: a NUL in the name, or a suffix outside ``IMAGE_TYPES`` (one line naming both).
    """
    printable = "".join(c if c.isprintable() else "?" for c in file_name)[:120]
    if "\0" in file_name:
        raise ImageError(f"{printable}: a file name with a NUL byte is not accepted")
    suffix = Path(file_name).suffix.lower().lstrip(".")
    if suffix not in IMAGE_TYPES:
        shown = f".{suffix} files" if suffix else "files without a suffix"
        raise ImageError(f"{printable}: {shown} are not supported; upload {UPLOAD_KINDS}")


def uploaded_image(data: bytes, file_name: str) -> ImageChoice:
    """An upload, checked by name (:func:`check_upload_name`) and decoded by ``load_image``.

    Raises:
        ImageError: an unsupported type, not an image, corrupt, too large or degenerate (one line, fit for the page).
    """
    check_upload_name(file_name)
    named = io.BytesIO(data)
    named.name = file_name  # load_image names the file in its messages
    image = fgvc_core.load_image(named)
    digest = hashlib.sha1(data).hexdigest()
    return ImageChoice(image, f"upload:{digest}", file_name, n_frames=frame_count(data))


def frame_count(data: bytes) -> int:
    """Frames in an image file (GIF/APNG/WebP animations); ``load_image`` keeps frame 0 only, so pages say so."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # load_image already decoded it; a count we cannot read is simply not reported
        return 1
