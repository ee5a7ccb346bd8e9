"""Naive re-computations for the tests: they live in `fgvc_core.testing.oracle`, shared with ``benchmarks/``."""

from __future__ import annotations

from fgvc_core.testing.oracle import naive_bilinear

__all__ = ["naive_bilinear"]
