"""The multi-seed ablation tables of ``train.ablate`` as the app reads them (no Streamlit here).

A grid run with ``python -m train.ablate --grid <grid>`` writes ``runs.csv`` (one row per finished run) into its out
folder (default ``runs/ablate/<grid>``), with the runs themselves in ``<variant>/seed<s>/`` beside it; ``--table-dir``
copies the table as ``<grid>_runs.csv`` (``benchmarks/ablation/`` for the committed results). The app finds a grid's
table in ``<runs root>/ablate/<grid>/`` for every allowed runs root (``fgvc_core.app.allowed``), in a folder the
visitor types (confined to those roots), and in the operator's tables folder ``FGVC_ABLATION_TABLES`` (default
``<repo>/benchmarks/ablation``; fixed, never typed).

Means and sds are recomputed from the runs with ``fgvc_core.engine.ablation.summarize`` (sample sd, NaN-free), so
the chart and the grid's own ``summary.csv`` agree by construction and every seed's number is at hand.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgvc_core.app.allowed import allowed_roots, confine, is_inside
from fgvc_core.app.settings import REPO_ROOT, AppPaths, display_path
from fgvc_core.engine.ablation import METRICS, summarize
from fgvc_core.errors import FGVCError

RUNS_FILE = "runs.csv"
COMMITTED_SUFFIX = "_runs.csv"  # train.ablate --table-dir's name: <grid>_runs.csv
SHIPPED_FOLDER = REPO_ROOT / "checkpoints" / "ablation"  # train.ablate --ship's median seeds, <grid>/<variant>/seed<s>/
TABLES_ENV = "FGVC_ABLATION_TABLES"
REQUIRED_COLUMNS = ("variant", "seed", "test_top1")
# The metrics a chart may draw (fractions in [0, 1]); counts and minutes are left to the table.
CHART_METRICS: dict[str, str] = {
    "test_top1": "test top-1",
    "val_top1": "validation top-1",
    "pointing_game": "pointing game",
    "pointing_centre": "pointing centre baseline",
    "crop_recall": "DPPM crop recall",
    "crop_area": "DPPM crop area",
}


class AblationTableError(FGVCError):
    """A runs table that cannot be read or does not hold the grid asked for; the message says why in one line."""


@dataclass(frozen=True)
class AblationTable:
    """The finished runs of one grid.

    Attributes:
        path: the runs CSV.
        source: how the app found it (``runs root``, ``tables folder`` or ``typed``).
        records: one dict per run: ``variant``, ``seed`` (int), every metric of ``METRICS`` (float, NaN when the
            run has none) and ``folder``.
        variants: the variant names in table order.
    """

    path: Path
    source: str
    records: tuple[dict[str, Any], ...]
    variants: tuple[str, ...]

    @property
    def run_folder(self) -> Path | None:
        """Where the runs lie (``<variant>/seed<s>/``): the table's folder for a grid's own ``runs.csv``; for a
        committed ``<grid>_runs.csv``, the folder ``train.ablate --ship`` writes the median seeds to."""
        if self.path.name == RUNS_FILE:
            return self.path.parent
        if self.path.name.endswith(COMMITTED_SUFFIX):
            return SHIPPED_FOLDER / self.path.name[: -len(COMMITTED_SUFFIX)]
        return None

    @property
    def label(self) -> str:
        return f"{display_path(self.path)} ({self.source})"

    def summary(self) -> list[dict[str, Any]]:
        """Per variant: ``runs``, ``seeds`` and ``<metric>_mean`` / ``<metric>_sd`` (H6's summarize)."""
        return summarize(self.records, self.variants)


def _number(text: str, where: str) -> float:
    if text is None or str(text).strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise AblationTableError(f"{where}: {text!r} is not a number") from None


def read_runs_table(path: Path, source: str) -> AblationTable:
    """Parse a ``runs.csv`` of ``train.ablate``.

    Raises:
        AblationTableError: unreadable, missing columns, a non-numeric value, a repeated (variant, seed), or no runs.
    """
    name = display_path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise AblationTableError(f"{name} is not a train.ablate runs table: no column {', '.join(missing)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AblationTableError(f"{name} cannot be read: {type(exc).__name__}") from None
    records, seen = [], set()
    for line, row in enumerate(rows, start=2):
        where = f"{name} line {line}"
        variant = (row.get("variant") or "").strip()
        seed = _number(row.get("seed"), where)
        if not variant or math.isnan(seed) or seed != int(seed):
            raise AblationTableError(f"{where}: every run needs a variant and an integer seed")
        if (variant, int(seed)) in seen:
            raise AblationTableError(f"{where}: {variant} seed {int(seed)} appears twice")
        seen.add((variant, int(seed)))
        record: dict[str, Any] = {"variant": variant, "seed": int(seed), "folder": row.get("folder") or ""}
        record.update({m: _number(row.get(m), where) for m in METRICS})
        records.append(record)
    if not records:
        raise AblationTableError(f"{name} holds no finished run yet")
    variants = tuple(dict.fromkeys(r["variant"] for r in records))
    return AblationTable(Path(path), source, tuple(records), variants)


def tables_folder() -> Path:
    """The operator's folder of committed tables (``FGVC_ABLATION_TABLES``, default ``benchmarks/ablation``)."""
    value = os.environ.get(TABLES_ENV, "").strip()
    if not value:
        return REPO_ROOT / "benchmarks" / "ablation"
    path = Path(value).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def grid_tables(grid: str, paths: AppPaths) -> list[tuple[Path, str]]:
    """The runs CSVs of ``grid``: each runs root's ``ablate/<grid>/runs.csv``, then the tables folder's."""
    found: list[tuple[Path, str]] = []
    roots = allowed_roots(paths).runs
    for root in roots:
        candidate = root / "ablate" / grid / RUNS_FILE
        if candidate.is_file() and is_inside(candidate, roots):  # a table symlinked out of the roots is not read
            found.append((candidate, "runs root"))
    committed = tables_folder() / f"{grid}_runs.csv"  # train.ablate --table-dir's name
    if committed.is_file():
        found.append((committed, "tables folder"))
    return found


def typed_table(text: str, paths: AppPaths) -> AblationTable:
    """The ``runs.csv`` in a folder a visitor typed; the folder must resolve inside the runs roots.

    Raises:
        PathNotAvailable: outside the runs roots (one message whatever the path is).
        AblationTableError: inside, but no ``runs.csv`` there, or it cannot be read.
    """
    raw = str(text).strip().strip("'\"")
    if not raw:
        raise AblationTableError("type the folder of a train.ablate grid (the one holding runs.csv)")
    folder = confine(raw, allowed_roots(paths).runs, paths.root)
    path = folder / RUNS_FILE if folder.is_dir() else folder
    if path.name != RUNS_FILE or not path.is_file():
        raise AblationTableError(f"{raw} holds no {RUNS_FILE}; run `python -m train.ablate` with --out there")
    return read_runs_table(path, "typed")


_VALUE = re.compile(r"^(?P<name>[a-z_]+?)(?P<value>\d+(?:\.\d+)?)$")


def variant_value(variant: str, parameter: str) -> float | None:
    """The swept value a variant name carries (``gamma0.5`` -> 0.5 for ``gamma``), or None for any other name."""
    match = _VALUE.match(variant)
    if match is None or match.group("name") != parameter:
        return None
    return float(match.group("value"))


@dataclass(frozen=True)
class SweepPoints:
    """One metric of a parameter grid, per swept value: mean, sample sd, run count and every seed's value."""

    parameter: str
    metric: str
    values: list[float]
    means: list[float]
    sds: list[float]
    counts: list[int]
    seeds: list[list[int]]
    per_seed: list[list[float]]
    skipped: list[str]


def sweep_points(table: AblationTable, parameter: str, metric: str) -> SweepPoints:
    """The points of ``metric`` against ``parameter`` (variants named ``<parameter><value>``, sorted by value).

    Raises:
        AblationTableError: no variant of the table is named ``<parameter><value>``.
    """
    by_variant = {row["variant"]: row for row in table.summary()}
    pairs = sorted((v, n) for n in table.variants if (v := variant_value(n, parameter)) is not None)
    if not pairs:
        raise AblationTableError(
            f"{display_path(table.path)} has no {parameter}<value> variants (variants: {', '.join(table.variants)})"
        )
    skipped = [n for n in table.variants if variant_value(n, parameter) is None]
    means, sds, counts, seeds, per_seed = [], [], [], [], []
    for _, name in pairs:
        row = by_variant[name]
        runs = [r for r in table.records if r["variant"] == name and not math.isnan(r[metric])]
        means.append(row[f"{metric}_mean"])
        sds.append(row[f"{metric}_sd"])
        counts.append(len(runs))
        seeds.append([r["seed"] for r in runs])
        per_seed.append([r[metric] for r in runs])
    return SweepPoints(parameter, metric, [v for v, _ in pairs], means, sds, counts, seeds, per_seed, skipped)


def median_run(table: AblationTable, variant: str, metric: str = "test_top1") -> dict[str, Any] | None:
    """The run of ``variant`` with the median ``metric`` (the lower one of an even count; ties by seed), or None."""
    runs = sorted(
        (r for r in table.records if r["variant"] == variant and not math.isnan(r[metric])),
        key=lambda r: (r[metric], r["seed"]),
    )
    return runs[(len(runs) - 1) // 2] if runs else None


def run_checkpoint(table: AblationTable, record: dict[str, Any]) -> Path | None:
    """The selected checkpoint of one run (``<grid folder>/<variant>/seed<s>/best.safetensors``) when it exists."""
    if table.run_folder is None:
        return None
    path = table.run_folder / record["variant"] / f"seed{record['seed']}" / "best.safetensors"
    return path if path.is_file() else None
