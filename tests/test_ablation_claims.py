"""The claim verdicts against a direct re-computation with scipy's paired t interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fgvc_core.engine.ablation import load_grid
from fgvc_core.engine.ablation_claims import CLAIMS, Claim, check_claim, claims_markdown, t_quantile


def _records(variant: str, values: dict[int, float]) -> list[dict]:
    return [{"variant": variant, "seed": s, "test_top1": v} for s, v in values.items()]


def _scipy_interval(a: list[float], b: list[float]) -> tuple[float, float, float]:
    d = np.asarray(a) - np.asarray(b)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.std(ddof=1)), float(half)


def test_t_quantiles_match_scipy():
    for df in (1, 2, 3, 5, 10, 30):
        assert t_quantile(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-3)
    assert t_quantile(200) == pytest.approx(1.96)


@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [
        ([0.80, 0.82, 0.81], [0.70, 0.71, 0.72], "reproduced"),
        ([0.60, 0.61, 0.62], [0.70, 0.72, 0.71], "not reproduced"),
        ([0.80, 0.70, 0.75], [0.75, 0.76, 0.74], "within noise"),
    ],
)
def test_paired_verdicts_match_the_direct_t_interval(a, b, verdict):
    claim = Claim("p", "x beats y", "g", "x", ("y",))
    records = _records("x", dict(enumerate(a))) + _records("y", dict(enumerate(b)))
    result = check_claim(claim, records)
    mean, sd, half = _scipy_interval(a, b)
    assert result.effect == pytest.approx(mean)
    assert result.sd == pytest.approx(sd)
    assert result.half_width == pytest.approx(half, rel=1e-3)
    assert result.verdict == verdict
    assert result.seeds == (0, 1, 2)


def test_pairing_uses_only_the_seeds_both_cells_have_and_the_best_other_cell():
    claim = Claim("p", "x is best", "g", "x", ("y", "z"))
    records = (
        _records("x", {0: 0.9, 1: 0.8, 2: 0.85, 7: 0.1})  # seed 7 has no partner: left out
        + _records("y", {0: 0.5, 1: 0.5, 2: 0.5})
        + _records("z", {0: 0.88, 1: 0.79, 2: 0.86})  # the runner-up
    )
    result = check_claim(claim, records)
    assert result.compared_with == "z"
    assert result.seeds == (0, 1, 2)
    assert result.effect == pytest.approx(np.mean([0.02, 0.01, -0.01]))
    assert result.verdict == "within noise"


def test_one_seed_or_a_missing_cell_is_not_measured():
    claim = Claim("p", "x beats y", "g", "x", ("y",))
    assert check_claim(claim, _records("x", {0: 0.9})).verdict == "not measured"
    one = check_claim(claim, _records("x", {0: 0.9}) + _records("y", {0: 0.5}))
    assert one.verdict == "not measured" and one.effect == pytest.approx(0.4)


def test_every_claim_names_cells_of_its_grid():
    for claim in CLAIMS:
        variants = {v.name for v in load_grid(claim.grid).variants}
        assert claim.cell in variants, claim
        assert set(claim.against) <= variants, claim


def test_markdown_has_a_row_per_claim_with_its_verdict():
    claim = Claim("p", "x beats y", "g", "x", ("y",))
    records = _records("x", {0: 0.8, 1: 0.82, 2: 0.81}) + _records("y", {0: 0.7, 1: 0.71, 2: 0.72})
    text = claims_markdown([check_claim(claim, records)], "python -m train.ablate --claims")
    row = [line for line in text.splitlines() if line.startswith("| p |")]
    assert len(row) == 1 and "**reproduced**" in row[0] and "+10.0" in row[0]
