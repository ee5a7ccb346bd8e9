"""Which checkpoints the Compare variants page offers, and which it starts with (no Streamlit, no weights loaded).

What each model offers comes from its spec's :class:`~fgvc_core.models.registry.ComparePlan`. The offer: the
median-seed run of every variant of the plan's ablation grids found under the runs roots
(``fgvc_core.app.ablation_tables``), then every checkpoint the sidebar lists (demos, ``checkpoints/`` with the γ sweep,
runs trained in the app). Each path passes ``validate_checkpoint_path``, so a run folder symlinked out of the allowed
roots is never offered. The defaults: the plan's default variants of its default grid (CRA-SMRA: ``cra_table3``'s
``base``, ``cram`` and ``cram_smram`` medians, the paper's Figs. 4-6; RAMS-Trans: ``rams``' ``one_scale`` and
``two_scales``), else its fallback (CRA-SMRA: the γ sweep checkpoints; RAMS-Trans: the first listed checkpoints).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fgvc_core.app.ablation_tables import grid_tables, median_run, read_runs_table, run_checkpoint
from fgvc_core.app.checkpoints import list_checkpoints, validate_checkpoint_path
from fgvc_core.app.settings import AppPaths
from fgvc_core.errors import ConfigError, FGVCError
from fgvc_core.models.registry import ComparePlan, get_spec


@dataclass(frozen=True)
class Choice:
    """One checkpoint the page offers: its file, how the picker names it, and the grid variant it is (if any)."""

    path: Path
    label: str
    grid: str | None = None
    variant: str | None = None
    source: str = ""


def grid_medians(grid: str, paths: AppPaths, kind: str) -> list[Choice]:
    """The median-seed checkpoint (by test top-1) of every variant of ``grid``'s run tables, where it exists."""
    found = []
    for table_path, source in grid_tables(grid, paths):
        try:
            table = read_runs_table(table_path, source)
        except FGVCError:
            continue  # the Tune page reports a broken table; here it only offers nothing
        for variant in table.variants:
            record = median_run(table, variant)
            path = run_checkpoint(table, record) if record else None
            if path is None:
                continue
            try:
                info = validate_checkpoint_path(path, paths.root, kind)
            except FGVCError:
                continue
            top1 = record["test_top1"]
            accuracy = "" if math.isnan(top1) else f", test top-1 {100 * top1:.1f}%"
            runs = sum(r["variant"] == variant for r in table.records)
            label = f"{grid} · {variant} (median of {runs} seeds: seed {record['seed']}{accuracy})"
            found.append(Choice(info.path, label, grid, variant, "grid"))
    return found


def compare_plan(kind: str) -> ComparePlan:
    """What the Compare page offers for model ``kind``.

    Raises:
        ConfigError: the model is unknown or its spec has no compare plan.
    """
    plan = get_spec(kind).compare
    if plan is None:
        raise ConfigError(f"the Compare page has no plan for {get_spec(kind).title}")
    return plan


def compare_options(paths: AppPaths, kind: str, grids: Sequence[str] | None = None) -> list[Choice]:
    """The grids' median checkpoints first (default: the plan's), then every listed checkpoint of ``kind``."""
    grids = compare_plan(kind).grids if grids is None else grids
    options: dict[Path, Choice] = {}
    for grid in grids:
        for choice in grid_medians(grid, paths, kind):
            options.setdefault(choice.path, choice)
    for info in list_checkpoints(paths, kind):
        options.setdefault(info.path, Choice(info.path, info.label, source=info.source))
    return list(options.values())


def default_choices(options: Sequence[Choice], kind: str) -> list[Choice]:
    """What the page starts with (see the module docstring); never more than the plan's limit for ``kind``."""
    plan = compare_plan(kind)
    by_variant = {c.variant: c for c in options if c.grid == plan.default_grid}
    chosen = [by_variant[v] for v in plan.default_variants if v in by_variant]
    if not chosen:
        chosen = [c for c in options if c.source == "sweep"] if plan.fallback == "sweep" else list(options)
    return chosen[: plan.limit]
