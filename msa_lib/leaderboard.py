"""Summaries of a benchmark grid (``msa_lib.grid``): the tables and tests of chapter 9.

Every function takes the tidy table of ``grid.load_results`` (one row per cell) and first
summarises each (method, seed) -- a seed is one training run, the unit of replication -- and
only then averages over seeds, with a 95 % t-interval, so an interval says how much the
*training* varies, not how many clips there were.

Per (method, seed), for the chapter's headline metric ``key`` (Non0 Acc-2 on MOSI-style data):

* ``complete``: the clean test clips;
* ``random_mean`` (LNLN's "overall": the mean over r = 0.0 ... 0.9), ``random_auilc`` (TFR-Net's
  trapezoid area, step 0.1: MultiBench's un-normalised *relative robustness*) and
  ``random_effective`` (MultiBench's un-normalised *effective robustness* against a reference
  method's curve of the same seed, late fusion by default: positive = degrades more gracefully);
* ``mr_mean``: the mean over the modality-level rates MR 0.1 ... 0.7;
* ``fixed_mean``: the mean over the six incomplete fixed patterns (``tav`` is the complete data);
* ``in_domain``, ``held_out`` and ``gap`` (in-domain minus held-out), each the mean over domains.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics as M

SUMMARIES = ("complete", "random_mean", "random_auilc", "random_effective", "mr_mean", "fixed_mean",
             "in_domain", "held_out", "gap")
COSTS = ("n_params", "step_ms", "infer_ms_per_clip", "peak_mem_mb", "train_s")


def headline_key(table: pd.DataFrame) -> str:
    sets = set(table["metric_set"]) if "metric_set" in table else {"mosi"}
    if len(sets) != 1:
        raise ValueError(f"the table mixes metric sets {sorted(sets)}; pass key= explicitly")
    return M.PRIMARY_KEYS[sets.pop()]


def t_interval(values) -> tuple[float, float]:
    """(mean, half-width of the 95 % t-interval); half-width NaN for a single value."""
    from scipy import stats
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float("nan")
    return float(x.mean()), float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))


def curve(table: pd.DataFrame, kind: str, key: str | None = None) -> pd.DataFrame:
    """One protocol's curve per (method, seed): rows (method, seed), columns the rates (float)."""
    key = key or headline_key(table)
    part = table[table["kind"] == kind]
    out = part.pivot_table(index=["method", "seed"], columns="value", values=key, aggfunc="mean")
    out.columns = [float(c) for c in out.columns]
    return out.sort_index(axis=1)


def per_seed(table: pd.DataFrame, key: str | None = None, reference: str = "late_fusion") -> pd.DataFrame:
    """The summaries of each (method, seed) -> rows (method, seed), columns SUMMARIES (NaN where the
    grid lacks the conditions, e.g. no domains, or no reference method for effective robustness)."""
    key = key or headline_key(table)
    out = pd.DataFrame(index=pd.MultiIndex.from_frame(table[["method", "seed"]].drop_duplicates()
                                                      .sort_values(["method", "seed"])))
    by = table.groupby(["method", "seed", "kind"])[key]
    cell = lambda kind: by.mean().xs(kind, level="kind") if kind in set(table["kind"]) else None  # noqa: E731
    if (c := cell("complete")) is not None:
        out["complete"] = c
    if "random" in set(table["kind"]):
        rnd = curve(table, "random", key)
        out["random_mean"] = rnd.apply(M.mean_over_rates, axis=1)
        out["random_auilc"] = rnd.apply(M.auilc, axis=1)
        if reference in rnd.index.get_level_values("method"):
            ref = rnd.xs(reference, level="method")
            out["random_effective"] = [M.effective_robustness(rnd.loc[(m, s)], ref.loc[s]) if s in ref.index
                                       else np.nan for m, s in rnd.index]
    if (c := cell("mr")) is not None:
        out["mr_mean"] = c
    pat = table[(table["kind"] == "pattern") & (table["value"] != "tav")]
    if len(pat):
        out["fixed_mean"] = pat.groupby(["method", "seed"])[key].mean()
    if (c := cell("indomain")) is not None:
        out["in_domain"] = c
    if (c := cell("holdout")) is not None:
        out["held_out"] = c
        if "in_domain" in out:
            out["gap"] = out["in_domain"] - out["held_out"]
    return out[[c for c in SUMMARIES if c in out]]


def leaderboard(table: pd.DataFrame, key: str | None = None, reference: str = "late_fusion",
                sort_by: str = "complete") -> pd.DataFrame:
    """One row per method: each summary's mean over seeds and its 95 % half-width (``<summary>_ci``),
    the number of seeds, and the costs; sorted by ``sort_by`` (best first)."""
    seeds = per_seed(table, key, reference)
    rows = {}
    for method, part in seeds.groupby(level="method"):
        row = {"seeds": len(part)}
        for col in part.columns:
            row[col], row[f"{col}_ci"] = t_interval(part[col])
        rows[method] = row
    board = pd.DataFrame(rows).T
    board["seeds"] = board["seeds"].astype(int)
    board = board.join(costs(table))
    board.index.name = "method"
    if sort_by in board:
        board = board.sort_values(sort_by, ascending=sort_by == "gap")
    return board


def costs(table: pd.DataFrame) -> pd.DataFrame:
    """Per method, the costs of its all-domain training (mean over seeds): parameters used to
    predict, ms per training step, ms of inference per clip, peak memory (MB) and training seconds."""
    part = table[table["kind"] != "holdout"].drop_duplicates(["method", "seed"])
    return part.groupby("method")[[c for c in COSTS if c in part]].mean()


def pattern_table(table: pd.DataFrame, key: str | None = None) -> pd.DataFrame:
    """Methods x the seven fixed patterns, each the mean over seeds."""
    key = key or headline_key(table)
    part = table[table["kind"] == "pattern"]
    out = part.pivot_table(index="method", columns="value", values=key, aggfunc="mean")
    return out[[p for p in ("tav", "ta", "tv", "av", "t", "a", "v") if p in out]]


def domain_table(table: pd.DataFrame, key: str | None = None) -> pd.DataFrame:
    """Per (method, domain): in-domain, held-out and their gap, each the mean over seeds."""
    key = key or headline_key(table)
    part = table[table["kind"].isin(["indomain", "holdout"])]
    out = part.pivot_table(index=["method", "value"], columns="kind", values=key, aggfunc="mean")
    out = out.rename(columns={"indomain": "in_domain", "holdout": "held_out"})
    out.index.names = ["method", "domain"]
    out["gap"] = out["in_domain"] - out["held_out"]
    return out[["in_domain", "held_out", "gap"]]


def paired_difference(table: pd.DataFrame, a: str, b: str, summary: str = "complete", key: str | None = None,
                      reference: str = "late_fusion") -> dict:
    """Method ``a`` minus method ``b`` on one summary, paired by seed (same seed, same data and
    masks): the mean difference, its 95 % t-interval, the paired t-test's two-sided p-value, and
    in how many seeds ``a`` was ahead."""
    from scipy import stats
    seeds = per_seed(table, key, reference)[summary]
    both = pd.concat({"a": seeds.xs(a, level="method"), "b": seeds.xs(b, level="method")}, axis=1).dropna()
    if len(both) < 2:
        raise ValueError(f"a paired test needs at least two seeds that both {a!r} and {b!r} ran")
    d = both["a"] - both["b"]
    mean, half = t_interval(d)
    p = float(stats.ttest_rel(both["a"], both["b"]).pvalue) if d.std(ddof=1) > 0 else float(d.mean() == 0)
    return {"a": a, "b": b, "summary": summary, "seeds": len(d), "difference": mean, "ci": half,
            "p": p, "a_ahead": int((d > 0).sum())}


def within_noise(board: pd.DataFrame, summary: str = "complete") -> list[str]:
    """The methods whose 95 % interval on ``summary`` overlaps the best method's interval."""
    col, ci = board[summary], board[f"{summary}_ci"].fillna(0)
    lower_is_better = summary == "gap"
    best = col.idxmin() if lower_is_better else col.idxmax()
    lo, hi = col[best] - ci[best], col[best] + ci[best]
    return [m for m in board.index if col[m] + ci[m] >= lo and col[m] - ci[m] <= hi]


LABELS = {"complete": "complete", "random_mean": "random R (mean)", "mr_mean": "modality MR (mean)",
          "fixed_mean": "fixed subsets (mean)", "held_out": "held-out domain", "gap": "gap"}


def formatted(board: pd.DataFrame, columns=LABELS, digits: int = 3) -> pd.DataFrame:
    """The leaderboard as text, "mean ± half-width" per summary (only those the grid has)."""
    def cell(mean, half):
        return f"{mean:.{digits}f}" if np.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"
    return pd.DataFrame({label: [cell(m, h) for m, h in zip(board[c], board[f"{c}_ci"])]
                         for c, label in columns.items() if c in board}, index=board.index)
