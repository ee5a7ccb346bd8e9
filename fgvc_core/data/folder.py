"""A user's own images: one sub-folder per class, as torchvision's ``ImageFolder`` reads them.

``root/<split>/<class>/*.jpg`` when ``root/<split>`` exists, else ``root/<class>/*.jpg``. Classes are the sorted
sub-folder names and images are found by extension, as in torchvision, but the walk is our own because a user's
folder is not always clean:

- hidden entries (``.ipynb_checkpoints``, ``.DS_Store``, ``._x.jpg``) are skipped, so they never become a class
  or an image;
- a folder already walked (a self-symlink, a link to a parent or to the root) is not walked again, and an image
  reached twice (through a symlink or a hard link) is kept once, under the first name met: a self-symlink gave
  41 copies of every image with torchvision's walk;
- a file with an image extension that is not a regular file (FIFO, device, socket, symlink loop, broken link)
  is an error naming it, before any worker could block on it;
- one image reached from two class folders is an error (it cannot have both labels).

Decoding goes through `load_image`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from fgvc_core.data._base import ImageListDataset
from fgvc_core.data._validate import check_split, require_root
from fgvc_core.data.images import MISSING, printable_path, regular_file_problem
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
        classes = [entry.name for entry in _visible_entries(self.root) if _is_dir(entry)]
        if not classes:
            raise DatasetError(f"{NAME}: {self.root} has no class sub-folders (expected <class>/<image> files)")
        walk = _ImageWalk(self.root, tuple(e.lower() for e in extensions))
        samples = []
        for label, name in enumerate(classes):
            images = walk.images(self.root / name, label)
            if not images:
                exts = ", ".join(extensions)
                raise DatasetError(f"{NAME}: class folder {self.root / name} has no image files ({exts})")
            samples += [(str(p), label) for p in images]
        super().__init__(samples, classes, transform)


class _ImageWalk:
    """Finds the images under class folders, remembering what it has seen across all classes.

    Folders and files are told apart by identity, ``(st_dev, st_ino)`` with symlinks followed: the resolved
    path's identity, taken in one ``stat`` (``realpath`` costs a syscall per path component, quadratic in a
    deep tree), and a hard link is the same file as well.
    """

    def __init__(self, root: Path, extensions: tuple[str, ...]) -> None:
        self.extensions = extensions
        # the root and every folder above it: a link to one of them is a loop that would walk the root again
        self._above = {_identity(p) for p in (root, *Path(os.path.abspath(root)).parents)}
        self._label_of: dict[tuple[int, int], tuple[int, Path]] = {}  # image identity -> (label, first path)

    def images(self, folder: Path, label: int) -> list[Path]:
        """Images under ``folder``, each file once: a folder's own files (sorted), then each sub-folder's in turn.

        That is torchvision's order. The walk uses a stack, not recursion, so a folder nested thousands deep
        cannot exhaust Python's recursion limit; symlinked folders are followed once, loops not at all.
        """
        found: list[Path] = []
        walked = set(self._above)  # identities of the folders walked for this class, and the root's line
        stack = [folder]
        while stack:
            current = stack.pop()
            identity = _identity(current)
            if identity in walked:
                continue  # a loop (self-symlink, link to a parent or to the root) or a folder reached twice
            walked.add(identity)
            files: list[Path] = []
            subfolders: list[Path] = []
            for entry in _visible_entries(current):
                (subfolders if _is_dir(entry) else files).append(Path(entry.path))
            found += [p for p in files if p.name.lower().endswith(self.extensions) and self._is_new(p, label)]
            stack += reversed(subfolders)
        return found

    def _is_new(self, path: Path, label: int) -> bool:
        """True the first time an image file is met; refuses non-regular files and a file in two classes."""
        try:
            info = path.stat()
        except (OSError, ValueError):
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            problem = regular_file_problem(path) or "changed while its folder was listed"
            what = "disappeared while its folder was listed" if problem == MISSING else problem
            raise DatasetError(f"{NAME}: {printable_path(path)} {what}")
        identity = (info.st_dev, info.st_ino)
        if identity not in self._label_of:
            self._label_of[identity] = (label, path)
            return True
        first_label, first = self._label_of[identity]
        if first_label != label:
            raise DatasetError(f"{NAME}: {printable_path(path)} is the same file as {printable_path(first)}, "
                               "in another class folder (an image cannot have two labels)")  # fmt: skip
        return False


def _identity(path: Path) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of a folder, symlinks followed."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise DatasetError(f"{NAME}: folder {printable_path(path)} cannot be read ({exc.strerror})") from None
    return (info.st_dev, info.st_ino)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """``entry.is_dir()`` (symlinks followed), False for a symlink loop: it then fails as a file, by name."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _visible_entries(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder`` sorted by name, hidden ones (a leading dot) left out."""
    try:
        with os.scandir(folder) as entries:
            return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"{NAME}: folder {printable_path(folder)} cannot be listed ({exc.strerror})") from None
