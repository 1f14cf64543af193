"""Summaries of a grid table (msa_lib.leaderboard) on hand-made tables with known answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from msa_lib import leaderboard as L
from msa_lib import metrics as M


def table(scores: dict, costs=None) -> pd.DataFrame:
    """scores: {(method, seed): {condition: Non0_acc_2}} -> a grid-shaped table."""
    rows = []
    for (method, seed), by_condition in scores.items():
        for condition, value in by_condition.items():
            kind, _, v = condition.partition(":")
            rows.append({"method": method, "seed": seed, "condition": condition, "kind": kind, "value": v or None,
                         "metric_set": "mosi", "Non0_acc_2": value, "MAE": 1 - value,
                         **(costs or {}).get(method, {"n_params": 10, "step_ms": 1.0, "infer_ms_per_clip": 0.1,
                                                      "peak_mem_mb": 5.0, "train_s": 2.0})})
    return pd.DataFrame(rows)


RATES = [round(0.1 * i, 1) for i in range(10)]


def model(clean: float, slope: float, mr: float = 0.6, held: float = 0.5, ind: float = 0.8, pat=0.55) -> dict:
    out = {"complete": clean, **{f"random:{r}": clean - slope * r for r in RATES}, "mr:0.1": mr, "mr:0.5": mr - 0.1}
    out.update({f"pattern:{p}": (clean if p == "tav" else pat) for p in ("tav", "ta", "tv", "av", "t", "a", "v")})
    out.update({"indomain:x": ind, "holdout:x": held, "indomain:y": ind - 0.1, "holdout:y": held - 0.2})
    return out


def test_per_seed_summaries_follow_the_definitions():
    t = table({("a", 0): model(0.8, 0.3), ("late_fusion", 0): model(0.7, 0.1)})
    s = L.per_seed(t).loc[("a", 0)]
    curve_a = [0.8 - 0.3 * r for r in RATES]
    curve_ref = [0.7 - 0.1 * r for r in RATES]
    assert s["complete"] == pytest.approx(0.8)
    assert s["random_mean"] == pytest.approx(np.mean(curve_a))
    assert s["random_auilc"] == pytest.approx(sum((x + y) / 2 * 0.1 for x, y in zip(curve_a, curve_a[1:])))
    assert s["random_effective"] == pytest.approx(M.effective_robustness(curve_a, curve_ref))
    assert s["random_effective"] < 0                          # a steeper fall than the reference
    assert s["mr_mean"] == pytest.approx(0.55)
    assert s["fixed_mean"] == pytest.approx(0.55)             # the six incomplete patterns, not tav
    assert s["in_domain"] == pytest.approx(0.75) and s["held_out"] == pytest.approx(0.4)
    assert s["gap"] == pytest.approx(0.35)
    assert L.per_seed(t).loc[("late_fusion", 0), "random_effective"] == pytest.approx(0.0)


def test_leaderboard_averages_seeds_with_a_t_interval_and_sorts():
    scores = {("a", s): model(v, 0.2) for s, v in enumerate([0.80, 0.82, 0.84])}
    scores.update({("b", s): model(v, 0.2) for s, v in enumerate([0.70, 0.71, 0.72])})
    board = L.leaderboard(table(scores), reference="none")
    assert list(board.index) == ["a", "b"] and (board["seeds"] == 3).all()
    assert board.loc["a", "complete"] == pytest.approx(0.82)
    half = stats.t.ppf(0.975, 2) * np.std([0.80, 0.82, 0.84], ddof=1) / np.sqrt(3)
    assert board.loc["a", "complete_ci"] == pytest.approx(half)
    assert "random_effective" not in board                    # no reference method in the grid
    assert board.loc["a", "n_params"] == 10


def test_t_interval_of_one_value_has_no_width():
    mean, half = L.t_interval([0.5])
    assert mean == 0.5 and np.isnan(half)


def test_paired_difference_pairs_by_seed():
    # a beats b by exactly 0.01 in every seed although the seeds vary a lot: a paired test sees it
    scores = {("a", s): model(0.70 + 0.1 * s + 0.01, 0.2) for s in range(3)}
    scores.update({("b", s): model(0.70 + 0.1 * s, 0.2) for s in range(3)})
    scores[("a", 2)]["complete"] += 0.002
    res = L.paired_difference(table(scores), "a", "b")
    assert res["difference"] == pytest.approx(0.01 + 0.002 / 3)
    assert res["a_ahead"] == 3 and res["seeds"] == 3 and res["p"] < 0.05
    unpaired = stats.ttest_ind([0.71, 0.81, 0.912], [0.7, 0.8, 0.9]).pvalue
    assert unpaired > 0.5                                     # the same numbers, unpaired: noise
    with pytest.raises(ValueError, match="at least two seeds"):
        L.paired_difference(table({("a", 0): model(0.8, 0.1), ("b", 0): model(0.7, 0.1)}), "a", "b")


def test_within_noise_lists_the_methods_whose_interval_touches_the_best():
    board = pd.DataFrame({"complete": [0.80, 0.78, 0.70], "complete_ci": [0.01, 0.015, 0.01]}, index=["a", "b", "c"])
    assert L.within_noise(board) == ["a", "b"]


def test_pattern_and_domain_tables_and_costs():
    t = table({("a", 0): model(0.8, 0.2, pat=0.6), ("a", 1): model(0.8, 0.2, pat=0.4)},
              costs={"a": {"n_params": 7, "step_ms": 2.0, "infer_ms_per_clip": 0.2, "peak_mem_mb": 9.0, "train_s": 3.0}})
    pat = L.pattern_table(t)
    assert list(pat.columns) == ["tav", "ta", "tv", "av", "t", "a", "v"]
    assert pat.loc["a", "t"] == pytest.approx(0.5) and pat.loc["a", "tav"] == pytest.approx(0.8)
    dom = L.domain_table(t)
    assert dom.loc[("a", "y"), "gap"] == pytest.approx(0.7 - 0.3)
    assert L.costs(t).loc["a", "n_params"] == 7


def test_a_table_with_two_metric_sets_needs_an_explicit_key():
    t = table({("a", 0): model(0.8, 0.2)})
    t.loc[0, "metric_set"] = "sims"
    with pytest.raises(ValueError, match="mixes metric sets"):
        L.headline_key(t)
