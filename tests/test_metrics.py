"""MMSA metrics: hand-computed cases, zeros and ties, and agreement with scikit-learn."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from msa_lib import metrics as M


def test_mosi_hand_computed_case_with_zero_label():
    truth = [2.0, -1.0, 0.0, 0.6, -2.4]
    pred = [1.0, 0.5, -0.2, 0.0, -2.6]
    m = M.mosi_metrics(pred, truth)
    assert set(m) == set(M.MOSI_KEYS)
    # Has0: truth>=0 -> [T,F,T,T,F]; pred>=0 -> [T,T,F,T,F]: 3 of 5 agree
    assert m["Has0_acc_2"] == 0.6
    # Non0 drops the 0 label; truth>0 [T,F,T,F], pred>0 [T,T,F,F] (pred 0.0 is negative): 2 of 4
    assert m["Non0_acc_2"] == 0.5
    # Acc-7: round(clip) truth [2,-1,0,1,-2], pred [1,0,-0,0,-3] -> only index 2 agrees
    assert m["Mult_acc_7"] == 0.2
    # Acc-5 clips to [-2,2]: pred -2.6 -> -2 now agrees with truth -2.4 -> -2
    assert m["Mult_acc_5"] == 0.4
    assert m["MAE"] == round(np.mean([1.0, 1.5, 0.2, 0.6, 0.2]), 4)


def test_round_half_to_even_and_clipping():
    # 2.5 rounds to 2 (not 3), -0.5 to -0 (== 0), 3.7 clips to 3
    m = M.mosi_metrics([2.5, -0.5, 3.7, 1.5], [2.0, 0.0, 3.0, 2.0])
    assert m["Mult_acc_7"] == 1.0
    # Under Acc-5 the clip is at 2: 3.7 -> 2 and 3.0 -> 2 agree; 2.5 -> 2 agrees with 2
    assert m["Mult_acc_5"] == 1.0
    # MAE is NOT clipped for MOSI
    assert m["MAE"] == round(np.mean([0.5, 0.5, 0.7, 0.5]), 4)


def test_weighted_f1_uses_true_support_and_legacy_swaps_it():
    truth = np.array([1, 1, 1, 1, 1, 1, 0, 0])
    pred = np.array([1, 1, 1, 1, 0, 0, 0, 1])
    ours = M.weighted_f1(truth, pred)
    assert ours == pytest.approx(f1_score(truth, pred, average="weighted"))
    assert ours != pytest.approx(f1_score(pred, truth, average="weighted"))
    t, p = truth * 2.0 - 1, pred * 2.0 - 1
    assert M.mosi_metrics(p, t)["Non0_F1_score"] == round(ours, 4)
    legacy = M.mosi_metrics(p, t, legacy_f1_order=True)["Non0_F1_score"]
    assert legacy == round(f1_score(pred, truth, average="weighted"), 4)


@pytest.mark.parametrize("seed", range(5))
def test_mosi_agrees_with_sklearn_reference(seed):
    rng = np.random.default_rng(seed)
    truth = np.round(rng.uniform(-3, 3, 300) * 5) / 5       # on a grid: many exact zeros
    truth[:20] = 0.0
    pred = rng.normal(truth * 0.6, 1.2)
    pred[20:30] = rng.choice([-3.5, -2.5, -0.5, 0.5, 2.5, 0.0], 10)  # ties and out of range
    m = M.mosi_metrics(pred, truth)
    assert m["Has0_F1_score"] == round(f1_score(truth >= 0, pred >= 0, average="weighted"), 4)
    nz = truth != 0
    assert m["Non0_F1_score"] == round(f1_score(truth[nz] > 0, pred[nz] > 0, average="weighted"), 4)
    assert m["Corr"] == round(np.corrcoef(pred, truth)[0, 1], 4)
    ref7 = np.mean(np.round(np.clip(pred, -3, 3)) == np.round(np.clip(truth, -3, 3)))
    assert m["Mult_acc_7"] == round(ref7, 4)


def test_sims_thresholds_put_zero_negative_and_clip_first():
    # bins: 2-class x<=0 -> 0; 3-class (-1,-0.1] (-0.1,0.1] (0.1,1]
    assert list(M.sims_class([-1, -0.1, 0.0, 0.05, 0.1, 0.11, 1], 3)) == [0, 0, 1, 1, 1, 2, 2]
    assert list(M.sims_class([-0.7, -0.69, 0.7, 0.71], 5)) == [0, 1, 3, 4]
    assert list(M.sims_class([0.0, 1e-9], 2)) == [0, 1]
    m = M.sims_metrics([0.0, 2.0, -0.3], [-0.2, 1.0, -0.3])
    assert m["Mult_acc_2"] == 1.0            # 0.0 counts as negative like -0.2
    assert m["MAE"] == round(0.2 / 3, 4)      # 2.0 is clipped to 1.0 before the MAE
    truth = np.array([-0.8, 0.0, 0.4, 0.6, -0.2, 0.2])
    pred = np.array([-0.5, 0.2, 0.1, 0.9, 0.0, -0.4])
    ref = f1_score(truth > 0, pred > 0, average="weighted")
    assert M.sims_metrics(pred, truth)["F1_score"] == round(ref, 4)


def test_constant_prediction_gives_nan_corr_not_error():
    m = M.mosi_metrics(np.zeros(10), np.linspace(-2, 2, 10))
    assert math.isnan(m["Corr"]) and m["MAE"] > 0
    assert math.isnan(M.sims_metrics(np.ones(4), [0.1, 0.2, 0.3, 0.4])["Corr"])


def test_all_zero_labels_make_non0_undefined():
    m = M.mosi_metrics([0.3, -0.2], [0.0, 0.0])
    assert math.isnan(m["Non0_acc_2"]) and m["Has0_acc_2"] == 0.5


@pytest.mark.parametrize("pred,truth,msg", [
    ([1.0, 2.0], [1.0], "2 values but truth has 1"),
    ([], [], "zero samples"),
    ([1.0, float("nan")], [0.0, 1.0], "pred contains 1 non-finite"),
    ([1.0, 0.0], [float("inf"), 1.0], "truth contains 1 non-finite"),
])
def test_bad_inputs_raise_clear_errors(pred, truth, msg):
    with pytest.raises(ValueError, match=msg):
        M.mosi_metrics(pred, truth)


def test_compute_dispatch_and_headline():
    m = M.compute("sims", [0.5, -0.5], [0.4, -0.6])
    assert M.headline("sims", m) == 1.0
    with pytest.raises(ValueError, match="unknown metric set 'iemocap'"):
        M.compute("iemocap", [0.0], [0.0])


def test_robustness_summaries():
    curve = [0.8, 0.7, 0.6]
    assert M.mean_over_rates(curve) == pytest.approx(0.7)
    assert M.auilc(curve) == pytest.approx(0.1 * (0.75 + 0.65))
    # 11 equally spaced points: AUILC = 0.1 * (sum - (first + last) / 2)
    y = np.linspace(0.9, 0.4, 11)
    assert M.auilc(y) == pytest.approx(0.1 * (y.sum() - (y[0] + y[-1]) / 2))
    ref = [0.9, 0.6, 0.3]
    assert M.effective_robustness(curve, ref) == pytest.approx(0 + 0.2 + 0.4)
    assert M.effective_robustness(ref, ref) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="3 points but reference has 2"):
        M.effective_robustness(curve, [0.1, 0.2])
