"""The MMSA metric sets, written out so that each line can be read beside the definition.

Two families (see ``shared/specs/foundations.md`` section 2):

* :func:`mosi_metrics` -- CMU-MOSI, CMU-MOSEI and SynthMSA, labels in [-3, 3];
* :func:`sims_metrics` -- CH-SIMS and CH-SIMS v2, labels in [-1, 1].

Both return plain ``dict``\\ s with exactly MMSA's keys, values as Python floats in
[0, 1] (MAE and Corr unscaled), rounded to 4 decimals like MMSA. The pitfalls they
encode on purpose:

* binary F1 is the *support-weighted* F1, with weights from the **true** classes
  (``legacy_f1_order=True`` reproduces the pre-2021 bug that swapped the arguments);
* "Has0" puts a label of exactly 0 on the positive side, "Non0" drops it;
* Acc-5/Acc-7 clip first, then round half to even (``np.round``: 2.5 -> 2);
* SIMS clips predictions and labels to [-1, 1] *before* every metric, MAE and Corr
  included, and its Acc-2 puts 0 on the negative side;
* a constant prediction has no Pearson correlation: Corr is NaN, not an exception.

Robustness summaries over missing rates (:func:`mean_over_rates`, :func:`auilc`,
:func:`effective_robustness`) follow section 5.5 and 6.2 of the same spec.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

MOSI_KEYS = ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score",
             "Mult_acc_5", "Mult_acc_7", "MAE", "Corr")
SIMS_KEYS = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr")
# The one number a chapter puts in a headline, per metric set.
PRIMARY_KEYS = {"mosi": "Non0_acc_2", "sims": "Mult_acc_2"}
# Keys where lower is better (every other key is higher-is-better).
LOWER_IS_BETTER = {"MAE", "loss"}


# ------------------------------------------------------------------ building blocks
def _as_vectors(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    """Flatten to float64 vectors and check they are usable; raise ValueError otherwise."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(truth, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.size} values but truth has {t.size}")
    if p.size == 0:
        raise ValueError("cannot compute metrics on zero samples")
    for name, v in (("pred", p), ("truth", t)):
        bad = ~np.isfinite(v)
        if bad.any():
            raise ValueError(f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf), "
                             f"first at position {int(np.flatnonzero(bad)[0])}")
    return p, t


def weighted_f1(truth_cls, pred_cls) -> float:
    """Support-weighted F1 over the classes present in truth or prediction.

    Equals ``sklearn.metrics.f1_score(truth, pred, average="weighted")``: the mean of
    per-class F1 weighted by each class's count in ``truth``. A class that never occurs
    in ``truth`` has weight 0; a class never predicted has F1 0.
    """
    t = np.asarray(truth_cls).reshape(-1)
    q = np.asarray(pred_cls).reshape(-1)
    total = 0.0
    for c in np.union1d(t, q):
        tp = np.sum((q == c) & (t == c))
        n_true, n_pred = np.sum(t == c), np.sum(q == c)
        f1 = 0.0 if tp == 0 else 2.0 * tp / (n_true + n_pred)
        total += n_true * f1
    return float(total / t.size)


def pearson(p: np.ndarray, t: np.ndarray) -> float:
    """Pearson correlation, or NaN when either vector is constant (undefined)."""
    if p.size < 2 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(np.corrcoef(p, t)[0, 1])


def _f1(truth_cls, pred_cls, legacy_f1_order: bool) -> float:
    return weighted_f1(pred_cls, truth_cls) if legacy_f1_order else weighted_f1(truth_cls, pred_cls)


def _r4(d: dict) -> dict:
    return {k: (float("nan") if math.isnan(v) else round(float(v), 4)) for k, v in d.items()}


# ------------------------------------------------------------------ the two metric sets
def mosi_metrics(pred, truth, legacy_f1_order: bool = False) -> dict:
    """MMSA's MOSI/MOSEI regression metrics.

    pred, truth: (N,) scores on the [-3, 3] scale (any shape that flattens to N).
    Returns the keys of ``MOSI_KEYS``.
    """
    p, t = _as_vectors(pred, truth)
    out = {
        "Has0_acc_2": np.mean((p >= 0) == (t >= 0)),
        "Has0_F1_score": _f1(t >= 0, p >= 0, legacy_f1_order),
    }
    nonzero = t != 0                       # exact comparison, as MMSA does
    if nonzero.any():
        ps, ts = p[nonzero], t[nonzero]
        out["Non0_acc_2"] = np.mean((ps > 0) == (ts > 0))
        out["Non0_F1_score"] = _f1(ts > 0, ps > 0, legacy_f1_order)
    else:                                  # every label is exactly 0: undefined
        out["Non0_acc_2"] = out["Non0_F1_score"] = float("nan")
    for k, bound in ((5, 2.0), (7, 3.0)):
        out[f"Mult_acc_{k}"] = np.mean(np.round(np.clip(p, -bound, bound)) == np.round(np.clip(t, -bound, bound)))
    out["MAE"] = np.mean(np.abs(p - t))
    out["Corr"] = pearson(p, t)
    return _r4({k: out[k] for k in MOSI_KEYS})


SIMS_BINS = {
    2: (-1.01, 0.0, 1.01),
    3: (-1.01, -0.1, 0.1, 1.01),
    5: (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01),
}


def sims_class(x, k: int) -> np.ndarray:
    """Class index of each score under SIMS's k-class binning (right-closed intervals)."""
    edges = np.asarray(SIMS_BINS[k])
    # right-closed (a, b]: the class is the number of inner edges strictly below x
    return np.searchsorted(edges[1:-1], np.asarray(x, np.float64), side="left")


def sims_metrics(pred, truth, legacy_f1_order: bool = False) -> dict:
    """MMSA's CH-SIMS regression metrics (both vectors clipped to [-1, 1] first).

    Returns the keys of ``SIMS_KEYS``.
    """
    p, t = _as_vectors(pred, truth)
    p, t = np.clip(p, -1.0, 1.0), np.clip(t, -1.0, 1.0)
    out = {f"Mult_acc_{k}": np.mean(sims_class(p, k) == sims_class(t, k)) for k in (2, 3, 5)}
    out["F1_score"] = _f1(sims_class(t, 2), sims_class(p, 2), legacy_f1_order)
    out["MAE"] = np.mean(np.abs(p - t))
    out["Corr"] = pearson(p, t)
    return _r4({k: out[k] for k in SIMS_KEYS})


METRIC_SETS = {"mosi": mosi_metrics, "sims": sims_metrics}


def compute(metric_set: str, pred, truth, **kwargs) -> dict:
    """Dispatch on a dataset spec's ``metric_set`` ("mosi" or "sims")."""
    try:
        fn = METRIC_SETS[metric_set]
    except KeyError:
        raise ValueError(f"unknown metric set {metric_set!r}; choose one of {sorted(METRIC_SETS)}") from None
    return fn(pred, truth, **kwargs)


def headline(metric_set: str, metrics: dict) -> float:
    """The chapter headline number (Non0 Acc-2 for MOSI-style data, Acc-2 for SIMS)."""
    return metrics[PRIMARY_KEYS[metric_set]]


# ------------------------------------------------------------------ robustness summaries
def _curve(values) -> np.ndarray:
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    if y.size == 0:
        raise ValueError("a robustness curve needs at least one value")
    return y


def mean_over_rates(values) -> float:
    """LNLN's "overall" score: the arithmetic mean of a metric over the tested rates."""
    return float(np.mean(_curve(values)))


def auilc(values, step: float = 0.1) -> float:
    """TFR-Net's area under the indicator line chart: trapezoid rule with spacing ``step``."""
    y = _curve(values)
    return float(np.sum((y[:-1] + y[1:]) / 2.0) * step)


def effective_robustness(values, reference) -> float:
    """MultiBench's un-normalised effective robustness against a reference curve.

    Sum over rates of ``f_k - (ref_k + f_0 - ref_0)``: how far the curve stays above
    the reference curve shifted to start at the same clean score. Positive = degrades
    more gracefully than the reference.
    """
    f, r = _curve(values), _curve(reference)
    if f.shape != r.shape:
        raise ValueError(f"curve has {f.size} points but reference has {r.size}")
    return float(np.sum(f - (r + f[0] - r[0])))
