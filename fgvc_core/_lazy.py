"""One way to re-export names lazily from a package: an explicit table, looked up only on first use.

A package that imports its submodules eagerly drags timm, OpenCV, pytorch-grad-cam and scikit-learn into every
``import``; a ``__getattr__`` that scans submodules for a name imports all of them on any miss (and the import
system probes ``from pkg import submodule`` through ``__getattr__`` first). A table answers a miss at once.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, serving ``table[name]``'s attribute of the same name.

    Args:
        package: the package's ``__name__``.
        table: public name -> the module that defines it (e.g. ``"fgvc_core.data.images"``).

    Usage, in the package's ``__init__``::

        __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
    """

    def __getattr__(name: str) -> Any:
        module_name = table.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name), name)
        setattr(sys.modules[package], name, value)  # cache: later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
