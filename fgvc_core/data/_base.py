"""The common face of every dataset: ``samples``, ``classes``, boxes where the set has them, and decoding.

Loaders only parse their layout into ``samples`` (path, label) and ``classes``; decoding always goes through
`load_image`, so a training image and a user upload are read by the same door (EXIF, modes, 16 bit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from fgvc_core.data.images import load_image

Box = tuple[float, float, float, float]
"""An object box ``(x, y, w, h)`` in original-image pixels (CUB's convention, used for every set)."""


class ImageListDataset(torch.utils.data.Dataset):
    """A list of ``(path, label)`` samples with class names; items are ``(image, label)``.

    Attributes:
        samples: ``(path, label)`` per item, labels 0-based.
        classes: Class names, indexed by label.
        transform: Applied to the PIL image of each item when not None.
        boxes: One ``(x, y, w, h)`` box per item, or None when the set has no boxes.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        classes: Sequence[str],
        transform: Callable[[Image.Image], Any] | None = None,
        boxes: Sequence[Box] | None = None,
    ) -> None:
        self.samples: list[tuple[str, int]] = [(str(p), int(y)) for p, y in samples]
        self.classes: list[str] = list(classes)
        self.transform = transform
        self._boxes: list[Box] | None = None if boxes is None else [tuple(map(float, b)) for b in boxes]

    @property
    def targets(self) -> list[int]:
        """Labels of all items (torchvision's name, used by samplers)."""
        return [y for _, y in self.samples]

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> label."""
        return {name: i for i, name in enumerate(self.classes)}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def boxes(self) -> list[Box] | None:
        """One ``(x, y, w, h)`` box per item in original pixels, or None when the set has no boxes."""
        return self._boxes

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Image.Image:
        """The untransformed RGB image of item ``index``."""
        return load_image(self.samples[index][0])

    def box(self, index: int) -> Box | None:
        """The ``(x, y, w, h)`` object box of item ``index`` in original pixels, or None without boxes."""
        return None if self._boxes is None else self._boxes[index]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.load(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.samples[index][1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(items={len(self)}, classes={len(self.classes)})"
