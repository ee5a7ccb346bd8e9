"""Reading the MATLAB annotation files of Stanford Cars and Stanford Dogs with clear errors.

``scipy.io.loadmat`` raises a zoo of exceptions for a broken file and a KeyError for a missing variable; these
helpers turn both into a `DatasetError` naming the file and the variable.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from fgvc_core.data._validate import read_bytes
from fgvc_core.errors import DatasetError


def load_mat(path: Path) -> dict[str, Any]:
    """Load a .mat file with ``squeeze_me=True`` (the form torchvision reads).

    The bytes are read by `read_bytes` first, so a FIFO or device named ``*.mat`` is refused, not opened.
    """
    data = read_bytes(path, "MATLAB file")
    try:
        return scipy.io.loadmat(io.BytesIO(data), squeeze_me=True)
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, OSError... for a broken file
        reason = " ".join(str(exc).split())[:100] or type(exc).__name__
        raise DatasetError(f"{path} is not a readable MATLAB .mat file ({reason})") from None


def mat_field(mat: dict[str, Any], key: str, path: Path) -> Any:
    """The variable ``key`` of a loaded .mat file."""
    if key not in mat:
        found = ", ".join(sorted(k for k in mat if not k.startswith("__"))) or "none"
        raise DatasetError(f"{path} has no variable {key!r} (found: {found})")
    return mat[key]


def mat_records(mat: dict[str, Any], key: str, fields: Sequence[str], path: Path) -> list[np.void]:
    """The elements of the struct array ``key``, each required to have ``fields``."""
    value = np.atleast_1d(mat_field(mat, key, path))  # squeeze_me turns a 1-element struct array into 0-d
    names = value.dtype.names
    if names is None:
        raise DatasetError(f"{path}: variable {key!r} is not a struct array")
    missing = [f for f in fields if f not in names]
    if missing:
        raise DatasetError(f"{path}: struct {key!r} lacks field {missing[0]!r} (has {', '.join(names)})")
    return list(value.reshape(-1))


def mat_column(mat: dict[str, Any], key: str, path: Path) -> list[Any]:
    """The variable ``key`` as a flat list (a cell column or a numeric column)."""
    return np.atleast_1d(mat_field(mat, key, path)).reshape(-1).tolist()
