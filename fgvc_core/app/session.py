"""Per-session caches: traces, CAMs and rendered figures of one browser session, with measured compute times.

Traces depend on the user's image and slider values, so they live in ``st.session_state`` (one session never
sees another's) and not in a process-wide cache. An entry remembers how long it took to compute, so that the
page can print a measured "computed in … ms" and say when a value came from the cache instead.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")
_STORE = "_fgvc_cache"
MAX_ENTRIES = 24  # enough for a few images × slider positions of the demo models; old entries go first


@dataclass(frozen=True)
class Timed:
    """A computed value, the milliseconds it took, and whether this call found it in the cache."""

    value: Any
    ms: float
    cached: bool

    def caption(self, what: str = "computed") -> str:
        """``"computed in 12.3 ms"`` or ``"from this session's cache (computed in 12.3 ms)"``."""
        text = f"{what} in {self.ms:.1f} ms"
        return f"from this session's cache ({text})" if self.cached else text


def timed(compute: Callable[[], T]) -> tuple[T, float]:
    """Run ``compute`` and measure it with ``time.perf_counter``: ``(value, milliseconds)``."""
    start = time.perf_counter()
    value = compute()
    return value, (time.perf_counter() - start) * 1000.0


def _store() -> OrderedDict:
    if _STORE not in st.session_state:
        st.session_state[_STORE] = OrderedDict()
    return st.session_state[_STORE]


def cached(key: Hashable, compute: Callable[[], T], max_entries: int = MAX_ENTRIES) -> Timed:
    """The value of ``key`` in this session's cache, computing (and timing) it on a miss.

    Args:
        key: anything hashable that determines the value (model key, image key, options).
        compute: called without arguments on a miss.
        max_entries: least-recently-used entries beyond this are dropped.
    """
    store = _store()
    if key in store:
        store.move_to_end(key)
        value, ms = store[key]
        return Timed(value, ms, True)
    value, ms = timed(compute)
    store[key] = (value, ms)
    while len(store) > max_entries:
        store.popitem(last=False)
    return Timed(value, ms, False)


def clear() -> None:
    """Forget every cached value of this session."""
    _store().clear()
