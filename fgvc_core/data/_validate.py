"""Checks shared by the dataset loaders: they turn a broken folder into one `DatasetError` naming the culprit.

Every loader validates its folder before it reads a single image, so that a user learns at once which file is
missing or which line of which file is malformed, instead of a KeyError deep inside a DataLoader worker.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePath
from typing import Any

from fgvc_core.data.images import MISSING, NotRegularFileError, printable_path, read_regular_file, regular_file_problem
from fgvc_core.errors import ConfigError, DatasetError

MAX_ANNOTATION_BYTES = 256 * 1024 * 1024
"""Largest annotation file (text, .mat, XML) we read; CUB's biggest, part_locs.txt, is 5.5 MB."""


def check_split(split: str, allowed: Sequence[str], dataset: str) -> str:
    """Return ``split`` if it is one of ``allowed``; else raise ConfigError listing the choices."""
    if split not in allowed:
        choices = ", ".join(repr(s) for s in allowed)
        raise ConfigError(f"{dataset}: split must be one of {choices}, got {split!r}")
    return split


def check_choice(value: str, allowed: Sequence[str], option: str) -> str:
    """Return ``value`` if it is one of ``allowed``; else raise ConfigError naming the option."""
    if value not in allowed:
        choices = ", ".join(repr(s) for s in allowed)
        raise ConfigError(f"{option} must be one of {choices}, got {value!r}")
    return value


def require_root(root: str | Path, dataset: str) -> Path:
    """Return ``root`` as a Path if it is an existing folder; else raise DatasetError."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"{dataset} folder not found: {path}")
    if not path.is_dir():
        raise DatasetError(f"{dataset} root is a file, not a folder: {path}")
    return path


def torchvision_root(root: str | Path, subfolder: str, dataset: str) -> Path:
    """The dataset's own folder for torchvision's layout: ``root/<subfolder>``, or ``root`` when it is that folder."""
    path = require_root(root, dataset)
    if (path / subfolder).is_dir():
        return path / subfolder
    if path.name == subfolder:
        return path
    raise DatasetError(f"{dataset}: folder {path / subfolder} is missing (torchvision expects root/{subfolder})")


def require_file(path: Path, dataset: str) -> Path:
    """Return ``path`` if it is an existing regular file; else raise DatasetError naming it and what it is."""
    problem = regular_file_problem(path)
    if problem is not None:
        what = "is a folder, expected a file" if path.is_dir() else problem
        raise DatasetError(f"{dataset}: required file {printable_path(path)} {what}")
    return path


def read_bytes(path: Path, dataset: str, max_bytes: int = MAX_ANNOTATION_BYTES) -> bytes:
    """The bytes of the annotation file ``path``: a regular file of at most ``max_bytes`` (else DatasetError)."""
    require_file(path, dataset)
    try:
        return read_regular_file(path, max_bytes)
    except NotRegularFileError as exc:
        raise DatasetError(f"{dataset}: {printable_path(path)} {exc.problem}") from None


def read_text(path: Path, dataset: str) -> str:
    """An annotation file as text: UTF-8, with or without a byte-order mark (Windows editors write one)."""
    try:
        return read_bytes(path, dataset).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a UTF-8 text file") from None


def require_dir(path: Path, dataset: str) -> Path:
    """Return ``path`` if it is an existing folder; else raise DatasetError naming it."""
    if not path.is_dir():
        what = "is a file, expected a folder" if path.exists() else "is missing"
        raise DatasetError(f"{dataset}: required folder {path} {what}")
    return path


def read_lines(path: Path, dataset: str) -> list[tuple[int, str]]:
    """Return ``(line_number, stripped_text)`` for each non-blank line of a text file (1-based numbers)."""
    text = read_text(path, dataset)
    return [(n, line.strip()) for n, line in enumerate(split_lines(text), start=1) if line.strip()]


def split_lines(text: str) -> list[str]:
    """The lines of a text file, split at ``\\n``, ``\\r\\n`` or ``\\r`` only (as Python's text files do).

    Not ``str.splitlines``: it also splits at U+0085, U+2028 and other separators that may sit inside a name
    (a class called ``"Caf\\x85"`` became two malformed lines).
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def parse_table(
    path: Path,
    parsers: Sequence[Callable[[str], Any]],
    expected: str,
    dataset: str,
    last_takes_rest: bool = False,
) -> list[tuple[int, tuple[Any, ...]]]:
    """Parse a whitespace-separated table where every line has ``len(parsers)`` fields.

    Args:
        path: The text file.
        parsers: One converter per column (e.g. ``int``, ``float``, ``str``); a ValueError marks the line bad.
        expected: The line format shown in the error, e.g. ``"<image_id> <image_path>"``.
        dataset: Dataset name for messages.
        last_takes_rest: The last column keeps the rest of the line, spaces included (CUB part names such as
            ``left eye`` contain spaces).

    Returns:
        ``(line_number, fields)`` per non-blank line.
    """
    n = len(parsers)
    rows = []
    for line_no, text in read_lines(path, dataset):
        parts = text.split(maxsplit=n - 1) if last_takes_rest else text.split()
        try:
            if len(parts) != n:
                raise ValueError
            fields = tuple(parse(part) for parse, part in zip(parsers, parts))
        except ValueError:
            raise DatasetError(f"{path} line {line_no}: expected '{expected}', got {_short(text)!r}") from None
        rows.append((line_no, fields))
    return rows


def unique_ids(rows: Iterable[tuple[int, tuple[Any, ...]]], path: Path) -> dict[Any, tuple[Any, ...]]:
    """Map the first field of each row to the rest; raise DatasetError on a repeated id."""
    table: dict[Any, tuple[Any, ...]] = {}
    for line_no, fields in rows:
        key = fields[0]
        if key in table:
            raise DatasetError(f"{path} line {line_no}: id {key} appears twice")
        table[key] = fields[1:]
    return table


def check_images_exist(paths: Sequence[str | Path], listed_in: Path | str) -> None:
    """Raise DatasetError naming the first listed image that is not a regular file on disk (and how many are not).

    A FIFO, a device or a symlink loop is named as what it is, not as "missing", and refused before a DataLoader
    worker could block on it.
    """
    bad = [(p, problem) for p in paths if (problem := regular_file_problem(Path(p))) is not None]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        path, problem = bad[0]
        if problem == MISSING:
            raise DatasetError(f"image listed in {listed_in} is missing: {printable_path(path)}{more}")
        raise DatasetError(f"image listed in {listed_in}: {printable_path(path)} {problem}{more}")


def require_images(paths: Sequence[Any], split: str, listed_in: Path | str, dataset: str) -> None:
    """Raise DatasetError when a split lists no image: an empty split would train or score on nothing."""
    if not paths:
        raise DatasetError(f"{dataset}: split {split!r} has no images (nothing listed for it in {listed_in})")


class ImageFolderGuard:
    """Joins annotated image paths to the image folder and refuses any that lead outside it.

    ``"../../../x.png"``, ``"/etc/passwd"`` and a symlink whose target lies elsewhere would otherwise let an
    annotation file pull any file on the machine into a dataset. The folder itself may be a symlink (an
    ``images/`` folder kept on another disk); what it lists may not leave it.
    """

    def __init__(self, image_dir: Path) -> None:
        self.image_dir = image_dir
        self._real = Path(os.path.realpath(image_dir))
        self._real_folders: dict[Path, str] = {}  # resolved once per folder, not once per image

    def join(self, relative: str, where: str) -> Path:
        """``image_dir / relative``, unresolved, after checking it resolves inside ``image_dir``.

        Args:
            relative: The path as the annotation file writes it.
            where: The file and line (or entry) that lists it, for the message.
        """
        shown = printable_path(relative)
        if not relative or PurePath(relative).is_absolute():
            raise DatasetError(f"{where}: image path {shown!r} must be relative to {self.image_dir}")
        path = self.image_dir / relative
        try:
            real = Path(self._realpath(path))
        except ValueError:  # an embedded NUL
            raise DatasetError(f"{where}: image path {shown!r} contains a NUL character") from None
        if not real.is_relative_to(self._real):
            raise DatasetError(f"{where}: image path {shown!r} leads outside the image folder {self.image_dir}")
        return path

    def _realpath(self, path: Path) -> str:
        """``os.path.realpath(path)`` (non-strict: a missing file is reported later, by name), one syscall a file."""
        if path.name in ("", ".", ".."):
            return os.path.realpath(path)
        if path.parent not in self._real_folders:
            self._real_folders[path.parent] = os.path.realpath(path.parent)
        real = os.path.join(self._real_folders[path.parent], path.name)
        return os.path.realpath(real) if os.path.islink(real) else real


def check_box(box: Sequence[float], where: str) -> tuple[float, float, float, float]:
    """Return an ``(x, y, w, h)`` box if its values are finite, ``x, y >= 0`` and ``w, h > 0``; else DatasetError.

    A NaN or negative box would otherwise reach crop metrics and DPPM recall as silent garbage.
    """
    x, y, w, h = (float(v) for v in box)
    shown = f"(x, y, w, h) = ({x:g}, {y:g}, {w:g}, {h:g})"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise DatasetError(f"{where}: box {shown} has a value that is not a finite number")
    if x < 0 or y < 0:
        raise DatasetError(f"{where}: box {shown} starts at a negative coordinate")
    if w <= 0 or h <= 0:
        raise DatasetError(f"{where}: box {shown} has a zero or negative width or height")
    return (x, y, w, h)


def parse_int(text: str) -> int:
    """``int`` that also accepts ``"3.0"`` (some mirrors of the CUB files write floats)."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def parse_flag(text: str) -> int:
    """A 0/1 flag."""
    value = parse_int(text)
    if value not in (0, 1):
        raise ValueError(text)
    return value


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
