"""No traceback ever reaches the page: every page body and every fragment runs inside :func:`page_guard`.

- An ``FGVCError`` (bad upload, wrong checkpoint, invalid option) is the user's to fix: its one-line message is
  shown as it is.
- Anything else is our bug: the page shows the exception type and the first line of its message, and the full
  traceback goes to the server log, where a developer looks.
Streamlit's own control flow (``st.stop``, ``st.rerun``) derives from ``BaseException`` and passes through.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import streamlit as st

from fgvc_core.errors import FGVCError

LOG = logging.getLogger("fgvc_core.app")
F = TypeVar("F", bound=Callable[..., Any])


def one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (or its type when it has none)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def user_message(exc: BaseException) -> str:
    """What the page says about ``exc``: our own errors verbatim, others prefixed as unexpected."""
    if isinstance(exc, FGVCError):
        return one_line(exc)
    return f"Unexpected error ({type(exc).__name__}): {one_line(exc)}. The details are in the server log."


@contextmanager
def page_guard(where: Any = st) -> Iterator[None]:
    """Show any exception raised inside as an ``st.error`` in ``where`` (default: the main area)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the point: nothing escapes to the page as a traceback
        if not isinstance(exc, FGVCError):
            LOG.exception("unexpected error in the app")
        where.error(user_message(exc), icon="⚠️")


def guarded(fn: F) -> F:
    """Decorator: run ``fn`` inside :func:`page_guard` (for page bodies and ``st.fragment`` panels)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with page_guard():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
