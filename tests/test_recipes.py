"""recipe="official": the paper presets train the way the official runs did (switch by switch),
and the trainer pieces those recipes need (per-epoch schedule, first selectable epoch, fp32)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from msa_lib.missing import sample_train_rates
from msa_lib.models import build, make_config
from msa_lib.models.dashfusion import DashFusionConfig
from msa_lib.models.lnln import LNLNConfig
from msa_lib.train import TrainConfig, epoch_lr_factor, fit

PAPER = ("mosi", "mosei", "sims")


@pytest.mark.parametrize("cls", [LNLNConfig, DashFusionConfig])
def test_paper_presets_carry_every_official_switch(cls):
    for name in PAPER:
        cfg = cls.preset(name)
        assert {k: getattr(cfg, k) for k in cls.OFFICIAL} == cls.OFFICIAL, name
        assert cfg.text_encoder == ("bert-base-chinese" if name == "sims" else "bert-base-uncased")
    synth = cls.preset("synth")
    assert synth.recipe == "book" and synth.text_encoder == "features"


def test_trainer_is_fp32_unless_asked():
    assert TrainConfig().amp is False


def test_lnln_official_schedule_per_epoch():
    """200 epochs: epoch 1 at lr 0, 20 warm-up epochs, then cosine over 180 (spec section 6)."""
    f = [epoch_lr_factor(e, 200, 20, "cosine") for e in range(200)]
    assert f[0] == 0.0 and f[1] == pytest.approx(1 / 20) and f[20] == 1.0 and f[21] == 1.0
    assert f[22] == pytest.approx(0.5 * (1 + math.cos(math.pi / 180)))
    assert f[199] == pytest.approx(0.5 * (1 + math.cos(math.pi * 178 / 180)))
    tc = LNLNConfig.preset("mosi").train_config()
    assert (tc.schedule_unit, tc.schedule, tc.warmup, tc.grad_clip, tc.amp) == ("epoch", "cosine", 0.1, None, False)


def test_first_epoch_of_the_epoch_schedule_trains_with_lr_zero(tiny):
    """LNLN's code quirk: the warm-up starts at lr 0, so its whole first epoch changes nothing."""
    for unit, unchanged in (("epoch", True), ("step", False)):
        torch.manual_seed(0)
        model = build("tfn", tiny.spec)
        before = [p.detach().clone() for p in model.parameters()]
        fit(model, tiny, TrainConfig(epochs=1, batch_size=32, warmup=1.0, schedule_unit=unit, weight_decay=0.1))
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())) == unchanged, unit


def test_select_from_never_selects_an_earlier_epoch(tiny):
    torch.manual_seed(0)
    res = fit(build("tfn", tiny.spec), tiny, TrainConfig(epochs=3, batch_size=32, select_from=2))
    assert res.best_epoch == 2
    with pytest.raises(ValueError, match="no selectable epoch"):
        fit(build("tfn", tiny.spec), tiny, TrainConfig(epochs=2, select_from=2))


def test_exactly_half_complete_per_modality_and_batch():
    for n in (64, 17):
        r = sample_train_rates(np.arange(n), seed=1, epoch=3, exact=True)
        assert ((r == 0).sum(0) == n // 2).all()
        bern = sample_train_rates(np.arange(n), seed=1, epoch=3, exact=False)
        assert bern.shape == r.shape
    # Bernoulli(0.5) does not hold the count fixed: over many batches it varies
    counts = {int((sample_train_rates(np.arange(64), seed=s, epoch=0)[:, 0] == 0).sum()) for s in range(20)}
    assert len(counts) > 1


def test_lnln_official_decay_covers_every_parameter(tiny):
    official = build("lnln", tiny.spec, **{**LNLNConfig.OFFICIAL, "d_model": 16, "dim_head": 8, "mlp_dim": 16})
    groups = official.param_groups(1e-4)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 1e-4
    assert sum(p.numel() for p in groups[0]["params"]) == official.n_params()
    book = build("lnln", tiny.spec, preset="synth")
    assert [g["weight_decay"] for g in book.param_groups(1e-4)] == [1e-4, 0.0]


def test_lnln_official_training_corruption_is_static_and_exact(tiny):
    from msa_lib.data.batch import make_batch
    model = build("lnln", tiny.spec, **{**LNLNConfig.OFFICIAL, "d_model": 16, "dim_head": 8, "mlp_dim": 16})
    b = make_batch(tiny.train, np.arange(32))
    e0, e5 = model.train_batch(b, epoch=0, seed=0), model.train_batch(b, epoch=5, seed=0)
    assert torch.equal(e0.missing_rate, e5.missing_rate)                 # the same masks every epoch
    assert ((e0.missing_rate == 0).sum(0) == 16).all()                  # exactly half complete


def _small_dash(spec, **kw):
    return build("dashfusion", spec, **{**DashFusionConfig.OFFICIAL, "d_model": 16, "heads": 2, "ff_dim": 32,
                                        "encoder_layers": 1, "align_heads": 2, "align_head_dim": 8, **kw})


def test_dashfusion_encoder_feed_forward_has_the_official_dropout(tiny):
    """torch's TransformerEncoderLayer drops out inside its feed-forward block too."""
    for model, p in ((_small_dash(tiny.spec), 0.5), (build("dashfusion", tiny.spec, preset="synth"), None)):
        inner = model.audio.layers[0].ff[2]                               # Linear, GELU, here, Linear
        assert isinstance(inner, torch.nn.Dropout) and inner.p == p if p else isinstance(inner, torch.nn.Identity)


def test_dashfusion_official_decay_rule_by_name(tiny, with_bert_root):
    model = _small_dash(tiny.spec, text_encoder="bert-base-uncased")
    decay, no_decay = model.param_groups(1e-3)
    ids = {id(p) for p in no_decay["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in ids}
    assert all("bias" in n or "LayerNorm.weight" in n for n in names)
    assert any("LayerNorm.weight" in n for n in names)                   # BERT's norms are excluded ...
    own_norms = [n for n, _ in model.named_parameters() if "norm" in n and "LayerNorm" not in n
                 and n.endswith("weight")]
    assert own_norms and not (set(own_norms) & names)                   # ... DashFusion's own are decayed
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (1e-3, 0.0)


@pytest.fixture
def with_bert_root(monkeypatch, tiny_bert_root):
    monkeypatch.setenv("MSA_BERT", str(tiny_bert_root))


def test_dashfusion_refuses_to_train_without_companions(tiny):
    from msa_lib.data.batch import make_batch
    model = _small_dash(tiny.spec, official_masks=False).train()
    with pytest.raises(RuntimeError, match="on_epoch_start"):
        model(make_batch(tiny.train, np.arange(4)))
    assert DashFusionConfig.preset("mosi").train_config().select_from == 1


def test_dashfusion_companions_depend_on_the_training_seed(tiny):
    model = _small_dash(tiny.spec, official_masks=False, faithful_rank_bug=False)
    draws = []
    for seed in (0, 1):
        model.on_epoch_start(0, tiny.train, "cpu", seed=seed)
        draws.append(model._rng.integers(0, 1 << 30, 8))
    model.on_epoch_start(0, tiny.train, "cpu", seed=0)
    assert not np.array_equal(draws[0], draws[1])
    assert np.array_equal(draws[0], model._rng.integers(0, 1 << 30, 8))


@pytest.mark.parametrize("module", ["lnln", "dashfusion"])
def test_the_fused_road_for_long_sequences_computes_the_same_attention(module):
    """Long sequences (MOSI's frames) go through scaled_dot_product_attention: same numbers."""
    import importlib
    mod = importlib.import_module(f"msa_lib.models.{module}")
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 200, 8) for _ in range(3))
    assert 200 * 200 > mod.LONG_ATTENTION
    scale = 8 ** -0.5
    reference = ((q @ k.transpose(-2, -1)) * scale).softmax(-1) @ v
    if module == "lnln":
        got = mod.attend(q, k, v)
    else:
        mask = torch.ones(2, 200, dtype=torch.bool)
        mask[1, 150:] = False
        reference[1] = ((q[1] @ k[1, :, :150].transpose(-2, -1)) * scale).softmax(-1) @ v[1, :, :150]
        got, weights = mod.attend(q, k, v, scale, mask, need_weights=False)
        assert weights is None
    assert torch.allclose(got, reference, atol=1e-5)


def test_official_configuration_benchmark_runs(tmp_path, tiny_bert_root):
    """The machinery of `bench --official`, on a small MOSI-shaped file and a tiny BERT."""
    from msa_lib.bench import bench_official_one
    from msa_lib.data.fixtures import write_mmsa_fixture
    data = write_mmsa_fixture(tmp_path / "mosi.pkl", "mosi_unaligned", sizes=(64, 4, 4))
    for name in ("lnln", "dashfusion"):
        row = bench_official_one(name, False, str(data), str(tiny_bert_root), steps=1)
        assert row["batch_size"] == {"lnln": 64, "dashfusion": 16}[name] and row["step_s"] > 0
        assert row["params_with_bert"] > row["params_without_bert"] > 0
        assert row["bert"] == "frozen" and row["official_step_s"] > 0
