"""The naive baselines the benchmarks compare against: the plain way to compute the same thing.

They live in `fgvc_core.testing.oracle` (one oracle module for tests and benchmarks, so that ``benchmarks/`` does
not carry a second RAMS-Trans forward); this module keeps the name the benchmark scripts and their tests use.
"""

from __future__ import annotations

from fgvc_core.testing.oracle import (
    EIGHT_CONNECTED,
    matrix_chain_rollout,
    naive_optimizer,
    naive_rams_forward,
    naive_train_step,
    scipy_box,
    separate_stage_cams,
)

__all__ = [
    "EIGHT_CONNECTED",
    "matrix_chain_rollout",
    "naive_optimizer",
    "naive_rams_forward",
    "naive_train_step",
    "scipy_box",
    "separate_stage_cams",
]
