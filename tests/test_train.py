import math

import numpy as np
import pandas as pd
import pytest
import torch

from msa_lib.models import build
from msa_lib.train import TrainConfig, evaluate, fit, lr_factor, robustness_sweep


def _fit(tiny, tmp_path=None, **kw):
    torch.manual_seed(0)
    model = build("early_fusion", tiny.spec, d_model=16)
    cfg = TrainConfig(epochs=kw.pop("epochs", 3), batch_size=16, lr=3e-3, seed=kw.pop("seed", 0), **kw)
    return model, fit(model, tiny, cfg, checkpoint_dir=tmp_path)


def test_fit_returns_history_and_learns(tiny):
    model, res = _fit(tiny, epochs=6)
    assert isinstance(res.history, pd.DataFrame) and len(res.history) == 6
    assert {"train_total", "valid_loss", "valid_Has0_acc_2", "lr", "seconds"} <= set(res.history.columns)
    assert res.history["train_total"].iloc[-1] < res.history["train_total"].iloc[0]
    assert res.best_epoch == int(res.history["valid_loss"].idxmin())   # selected on validation loss
    assert set(res.test) >= {"Has0_acc_2", "Non0_acc_2", "Mult_acc_7", "MAE", "Corr", "loss"}


def test_same_seed_same_metrics(tiny):
    _, a = _fit(tiny, deterministic=True)
    _, b = _fit(tiny, deterministic=True)
    assert a.test == b.test
    _, c = _fit(tiny, seed=5)
    assert c.test != a.test


def test_checkpoint_resume_matches_uninterrupted(tiny, tmp_path, monkeypatch):
    _, full = _fit(tiny, tmp_path / "full", epochs=4, deterministic=True)

    import msa_lib.train as T
    real_evaluate, calls = T.evaluate, {"n": 0}

    def crash_on_third_validation(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_evaluate(*a, **k)

    monkeypatch.setattr(T, "evaluate", crash_on_third_validation)
    with pytest.raises(KeyboardInterrupt):
        _fit(tiny, tmp_path / "part", epochs=4, deterministic=True)
    monkeypatch.setattr(T, "evaluate", real_evaluate)
    state = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    assert state["epoch"] == 1                      # two epochs were saved before the crash

    torch.manual_seed(123)                          # a fresh process would start from other weights
    model = build("early_fusion", tiny.spec, d_model=16)
    cfg = TrainConfig(epochs=4, batch_size=16, lr=3e-3, seed=0, deterministic=True)
    resumed = fit(model, tiny, cfg, checkpoint_dir=tmp_path / "part", resume=True)
    cols = ["epoch", "train_total", "valid_loss"]
    pd.testing.assert_frame_equal(resumed.history[cols], full.history[cols])
    assert resumed.test == full.test
    best = torch.load(tmp_path / "part" / "best.pt", weights_only=True)   # plain tensors and values only
    assert best["model_name"] == "early_fusion" and list(best["spec"]["dims"]) == [16, 6, 8]


def test_lr_schedules():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "linear") == pytest.approx(0.0)
    assert lr_factor(50, 100, 0, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(50, 100, 0, "step")


def test_bad_select_on(tiny):
    model = build("text_only", tiny.spec, d_model=8)
    with pytest.raises(KeyError, match="select_on"):
        fit(model, tiny, TrainConfig(epochs=1, select_on="accuracy"))


def test_robustness_sweep(tiny):
    model, _ = _fit(tiny, epochs=3)
    df = robustness_sweep(model, tiny.test, tiny.spec, "random", rates=[0.0, 0.5, 1.0])
    assert list(df["rate"]) == [0.0, 0.5, 1.0] and "Has0_acc_2" in df
    clean = evaluate(model, tiny.test, tiny.spec)
    assert df["MAE"].iloc[0] == pytest.approx(clean["MAE"])
    pats = robustness_sweep(model, tiny.test, tiny.spec, "pattern")
    assert len(pats) == 7 and pats["pattern"].iloc[0] == "tav"
    assert pats["MAE"].iloc[0] == pytest.approx(clean["MAE"])
    with pytest.raises(ValueError, match="protocol"):
        robustness_sweep(model, tiny.test, tiny.spec, "bursty")


def test_diverging_loss_is_reported(tiny):
    model = build("text_only", tiny.spec, d_model=8)
    with pytest.raises(FloatingPointError, match="learning rate"):
        fit(model, tiny, TrainConfig(epochs=2, lr=1e30, grad_clip=None, weight_decay=0.0))
