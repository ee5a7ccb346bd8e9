"""The papers' claims, checked on the ablation tables: effect size, its spread over seeds, and a verdict.

A claim compares two cells of one grid on one metric ("CRAM beats the multi-stage baseline": ``cram`` vs ``base``
on test top-1), or one cell against the best of several others ("δ = 0.9 is best": ``delta0.9`` vs the best other
δ). Runs with the same seed are paired: every cell of a grid trains on the same images in the same order for the
same budget, and the seed sets the initialisation and augmentation, so the per-seed difference d_s = A_s - B_s
removes the part of the spread the two cells share.

Verdict, on the paired differences (n seeds present in both cells):
- ``reproduced``: the 95 % confidence interval of mean(d) (Student t, n - 1 degrees of freedom) lies above 0;
- ``not reproduced``: it lies below 0 (the effect goes the other way, beyond the seed noise);
- ``within noise``: it contains 0;
- ``not measured``: fewer than 2 paired seeds.

For a "best of" claim the comparison is with the other value whose mean is highest (the runner-up), so
"reproduced" means the claimed value beats every other one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Two-sided 95 % quantiles of Student's t, by degrees of freedom (1..30); above 30 the normal 1.96 is used.
T95: tuple[float, ...] = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
VERDICTS = ("reproduced", "not reproduced", "within noise", "not measured")


@dataclass(frozen=True)
class Claim:
    """One claim of a paper: ``cell`` beats ``against`` (one cell, or the best of several) on ``metric``.

    Attributes:
        paper: where the claim comes from (e.g. "CRA-SMRA Table 3").
        text: the claim in words.
        grid: the ablation grid holding both cells.
        cell: the variant claimed better.
        against: the variant(s) it is claimed to beat; with several, the one of highest mean is compared.
        metric: a per-run metric of the tables (``test_top1``, ``pointing_game``, ...).
    """

    paper: str
    text: str
    grid: str
    cell: str
    against: tuple[str, ...]
    metric: str = "test_top1"


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    compared_with: str | None
    seeds: tuple[int, ...]
    mean_cell: float
    mean_other: float
    effect: float  # mean of the paired differences
    sd: float  # sample sd of the paired differences
    half_width: float  # of the 95 % confidence interval of the mean difference
    verdict: str


CLAIMS: tuple[Claim, ...] = (
    Claim("CRA-SMRA Table 3", "CRAM beats the multi-stage baseline", "cra_table3", "cram", ("base",)),
    Claim("CRA-SMRA Table 3", "CRAM beats CBAM's channel gate", "cra_table3", "cram", ("cbam",)),
    Claim("CRA-SMRA Table 3", "CRAM beats full CBAM (+CBAM row)", "cra_table3", "cram", ("cbam_full",)),
    Claim("CRA-SMRA Table 3", "SMRAM adds to CRAM", "cra_table3", "cram_smram", ("cram",)),
    Claim("CRA-SMRA Table 3", "the full model beats the plain backbone", "cra_table3", "cram_smram", ("plain",)),
    Claim("CRA-SMRA Table 4", "δ = 0.9 is best (retrained)", "cra_delta", "delta0.9",
          ("delta0.5", "delta0.7", "delta0.8", "delta1.0")),
    Claim("CRA-SMRA Table 5", "γ = 1 is best (retrained)", "cra_gamma", "gamma1", ("gamma0", "gamma0.5", "gamma2")),
    Claim("CRA-SMRA Table 5", "the diversity loss helps (γ = 1 vs 0)", "cra_gamma", "gamma1", ("gamma0",)),
    Claim("RAMS-Trans", "2 scales beat 1", "rams", "two_scales", ("one_scale",)),
    Claim("RAMS-Trans", "supervising scale 2 helps: w = (1,1) beats the official loss (1,0)", "rams",
          "two_scales", ("w1_0",)),
    Claim("RAMS-Trans", "α = 1.2 (official) beats α = 1.0 and 1.4", "rams", "two_scales", ("alpha1.0", "alpha1.4")),
    Claim("RAMS-Trans", "the CLS rollout query (paper) beats the mean query (official code)", "rams",
          "two_scales", ("mean_query",)),
)  # fmt: skip


def t_quantile(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom (``df`` >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return T95[df - 1] if df <= len(T95) else 1.96


def _by_seed(records: Sequence[Mapping], variant: str, metric: str) -> dict[int, float]:
    values = {}
    for record in records:
        value = float(record.get(metric, math.nan))
        if record["variant"] == variant and not math.isnan(value):
            values[int(record["seed"])] = value
    return values


def check_claim(claim: Claim, records: Sequence[Mapping]) -> ClaimResult:
    """The paired comparison of ``claim`` on the run records of its grid (see the module docstring)."""
    cell = _by_seed(records, claim.cell, claim.metric)
    others = {name: _by_seed(records, name, claim.metric) for name in claim.against}
    others = {name: values for name, values in others.items() if set(values) & set(cell)}
    if not cell or not others:
        return ClaimResult(claim, None, (), math.nan, math.nan, math.nan, math.nan, math.nan, "not measured")
    # The runner-up: the other cell with the highest mean over the seeds it shares with the claimed cell.
    name = max(others, key=lambda n: statistics.fmean(others[n][s] for s in set(others[n]) & set(cell)))
    seeds = tuple(sorted(set(others[name]) & set(cell)))
    diffs = [cell[s] - others[name][s] for s in seeds]
    mean_cell = statistics.fmean(cell[s] for s in seeds)
    mean_other = statistics.fmean(others[name][s] for s in seeds)
    effect = statistics.fmean(diffs)
    if len(diffs) < 2:
        return ClaimResult(claim, name, seeds, mean_cell, mean_other, effect, math.nan, math.nan, "not measured")
    sd = statistics.stdev(diffs)
    half = t_quantile(len(diffs) - 1) * sd / math.sqrt(len(diffs))
    verdict = "reproduced" if effect - half > 0 else "not reproduced" if effect + half < 0 else "within noise"
    return ClaimResult(claim, name, seeds, mean_cell, mean_other, effect, sd, half, verdict)


def check_claims(records_by_grid: Mapping[str, Sequence[Mapping]], claims: Sequence[Claim] = CLAIMS):
    """Every claim whose grid has records (the others come back ``not measured``)."""
    return [check_claim(c, records_by_grid.get(c.grid, ())) for c in claims]


def _points(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:+.1f}"


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.1f}"


def claims_markdown(results: Sequence[ClaimResult], command: str) -> str:
    """The verdict table: one row per claim, effects in percentage points (paired by seed)."""
    lines = [
        "# The papers' claims on the hard benchmark",
        "",
        f"Produced by `{command}` from the grid tables beside this file.",
        "",
        "Effect = mean over seeds of (claimed cell − compared cell), in percentage points of test top-1 (of the "
        "checkpoint selected on validation); sd = sample sd of those per-seed differences; ± = half-width of the "
        "95 % t interval. Verdicts: reproduced (interval above 0), not reproduced (below 0), within noise "
        "(contains 0), not measured (fewer than 2 paired seeds). Rules: `fgvc_core/engine/ablation_claims.py`.",
        "",
        "| source | claim | cells | seeds | means (%) | effect (pts) | sd | ± 95 % | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r.claim
        other = r.compared_with or " / ".join(c.against)
        seeds = " ".join(map(str, r.seeds)) or "—"
        means = "—" if math.isnan(r.mean_cell) else f"{_pct(r.mean_cell)} vs {_pct(r.mean_other)}"
        sd = "—" if math.isnan(r.sd) else f"{100 * r.sd:.1f}"
        half = "—" if math.isnan(r.half_width) else f"{100 * r.half_width:.1f}"
        lines.append(
            f"| {c.paper} | {c.text} | `{c.cell}` vs `{other}` | {seeds} | {means} | {_points(r.effect)} | {sd} | "
            f"{half} | **{r.verdict}** |"
        )
    return "\n".join(lines) + "\n"
