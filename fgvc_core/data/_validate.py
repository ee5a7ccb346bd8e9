"""Checks shared by the dataset loaders: they turn a broken folder into one `DatasetError` naming the culprit.

Every loader validates its folder before it reads a single image, so that a user learns at once which file is
missing or which line of which file is malformed, instead of a KeyError deep inside a DataLoader worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from fgvc_core.errors import ConfigError, DatasetError


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
    """Return ``path`` if it is an existing file; else raise DatasetError naming it."""
    if not path.is_file():
        what = "is a folder, expected a file" if path.is_dir() else "is missing"
        raise DatasetError(f"{dataset}: required file {path} {what}")
    return path


def require_dir(path: Path, dataset: str) -> Path:
    """Return ``path`` if it is an existing folder; else raise DatasetError naming it."""
    if not path.is_dir():
        what = "is a file, expected a folder" if path.exists() else "is missing"
        raise DatasetError(f"{dataset}: required folder {path} {what}")
    return path


def read_lines(path: Path, dataset: str) -> list[tuple[int, str]]:
    """Return ``(line_number, stripped_text)`` for each non-blank line of a text file (1-based numbers)."""
    require_file(path, dataset)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


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
    """Raise DatasetError naming the first listed image that is missing on disk (and how many are)."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"image listed in {listed_in} is missing: {missing[0]}{more}")


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
