"""What a browser may reach on the server: the allowed roots and the one containment check every typed path passes.

The app runs on a shared server, so a path a visitor types (a checkpoint, a dataset root) or that a recipe brings
into a run started from the page (``data.root``, ``model.pretrained``) must resolve, symlinks followed and ``..``
collapsed, inside an allowed root. Any other path gets the same one-line answer, "not available here", whether it
exists, is a folder or has the wrong suffix: the page must not tell a visitor what the server holds.

The roots, each an ``os.pathsep``-separated list read on every call (relative entries from the repository):

- ``FGVC_CHECKPOINT_ROOTS``: checkpoints (default ``<repo>/checkpoints``);
- ``FGVC_DATA_ROOTS``: dataset roots and benchmark folders (default ``<repo>/data``);
- ``FGVC_RUNS_ROOT``: runs (default ``<repo>/runs``); their checkpoints are openable like those above.

The folders the app itself lists (``FGVC_CHECKPOINT_DIR``, ``FGVC_RUNS_DIR``, ``FGVC_DATA_ROOT``) are always
allowed too: the operator chose them, and the sidebar must be able to open what it lists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fgvc_core.app.settings import REPO_ROOT, AppPaths, app_paths, display_path
from fgvc_core.errors import FGVCError

NOT_AVAILABLE = "not available here"
HIDDEN_PATH = "<server path>"


class PathNotAvailable(FGVCError):
    """A path outside the allowed roots (or one that cannot be resolved); the message never says which."""


@dataclass(frozen=True)
class AllowedRoots:
    """The resolved folders a visitor may reach, by purpose."""

    checkpoints: tuple[Path, ...]
    data: tuple[Path, ...]
    runs: tuple[Path, ...]

    @property
    def readable_checkpoints(self) -> tuple[Path, ...]:
        """Where a checkpoint may be opened from: the checkpoint roots and the runs."""
        return self.checkpoints + self.runs

    @property
    def every(self) -> tuple[Path, ...]:
        return self.checkpoints + self.data + self.runs


def _resolved(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loop (RuntimeError before 3.13), NUL byte
        return None


def _roots(variable: str, default: Path, always: Iterable[Path]) -> tuple[Path, ...]:
    value = os.environ.get(variable, "")
    entries = [Path(e.strip()).expanduser() for e in value.split(os.pathsep) if e.strip()] or [default]
    found: list[Path] = []
    for entry in [*entries, *always]:
        resolved = _resolved(entry if entry.is_absolute() else REPO_ROOT / entry)
        if resolved is not None and resolved not in found:
            found.append(resolved)
    return tuple(found)


def allowed_roots(paths: AppPaths | None = None) -> AllowedRoots:
    """The current roots, from the environment (see the module docstring)."""
    paths = paths or app_paths()
    return AllowedRoots(
        checkpoints=_roots("FGVC_CHECKPOINT_ROOTS", REPO_ROOT / "checkpoints", [paths.checkpoints]),
        data=_roots("FGVC_DATA_ROOTS", REPO_ROOT / "data", [paths.data]),
        runs=_roots("FGVC_RUNS_ROOT", REPO_ROOT / "runs", [paths.runs]),
    )


def is_inside(path: str | Path, roots: Sequence[Path], base: Path = REPO_ROOT) -> bool:
    """Whether ``path`` (relative ones from ``base``) resolves inside one of ``roots`` (already resolved)."""
    path = Path(path).expanduser()
    resolved = _resolved(path if path.is_absolute() else base / path)
    return resolved is not None and any(resolved == root or resolved.is_relative_to(root) for root in roots)


def confine(text: str | Path, roots: Sequence[Path], base: Path = REPO_ROOT) -> Path:
    """The resolved path of ``text`` when it lies inside ``roots``.

    Raises:
        PathNotAvailable: ``"<text>: not available here"`` for anything else, the same message whatever the path
            is, so the answer reveals nothing about the server's files.
    """
    raw = str(text)
    if "\0" in raw or not is_inside(raw, roots, base):
        raise PathNotAvailable(f"{_printable(raw)}: {NOT_AVAILABLE}")
    path = Path(raw).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _printable(raw: str, limit: int = 120) -> str:
    """The visitor's own text, on one line and bounded (it is echoed in the message)."""
    flat = "".join(c if c.isprintable() else "?" for c in raw)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_ABSOLUTE = re.compile(r"(?<![\w./~-])(?:~|/)[^\s'\"`,;()\[\]{}<>]*")


def redact_paths(text: str, roots: Sequence[Path]) -> str:
    """``text`` with every absolute path outside ``roots`` replaced by ``<server path>`` (those inside shortened)."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        core = token.rstrip(".:")  # a path that ends a sentence
        if core in ("", "/", "~"):
            return token  # "a / b" is no path
        if not is_inside(core, roots):
            return HIDDEN_PATH + token[len(core) :]
        return display_path(Path(core).expanduser()) + token[len(core) :]

    return _ABSOLUTE.sub(replace, text)
