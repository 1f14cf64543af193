"""HME (msa_lib.models.hme): sizes, retrieval, the bottleneck's confidence, missing modalities,
the batch-composition switch, the official recipe."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_finite_when_modalities_go_missing

from msa_lib.data import load
from msa_lib.data.batch import make_batch
from msa_lib.data.fixtures import write_mmsa_fixture
from msa_lib.data.spec import DatasetSpec
from msa_lib.missing import apply_keep_matrix, apply_pattern, train_keep_matrix
from msa_lib.models import build
from msa_lib.models.hme import HMEConfig, confidence, retrieve
from msa_lib.train import TrainConfig, fit, robustness_sweep

SMALL = dict(preset="synth", d_model=16, heads=2, head_ff=16)


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest: one thread for this module


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    root = tmp_path_factory.mktemp("hme_fixtures")
    return {p: load(str(write_mmsa_fixture(root / f"{k}.pkl", k, sizes=(8, 4, 4))))
            for p, k in (("mosi", "mosi_aligned"), ("mosei", "mosei_aligned"))}


def official_count(d, dims, layers, latent, hyper=3, latents=5, ff=2048):
    """Non-BERT parameters of the official model, module by module (spec section 4.8)."""
    mult_layer = 4 * d * d + 4 * d + (4 * d * d + 4 * d) + (4 * d * d + d) + 4 * d   # attn, fc1, fc2, 2 LN
    cross = 4 * d * d + d + 4 * d                       # q, kv (no bias), out; query and context LN
    geglu = (8 * d * d + 8 * d) + (4 * d * d + d) + 2 * d
    self_attn = 4 * d * d + d + 2 * d
    parts = {
        "proj": d * sum(dims),
        "mult": 3 * (layers * mult_layer + 2 * d),
        "perceivers": 4 * (latent * (cross + geglu + self_attn + geglu) + latents * d + 2 * d),
        "hyper": 9 * (hyper * (cross + geglu) + 2 * d),
        "vib": 3 * ((2 * d * d + 2 * d) + (4 * d * d + 2 * d) + (4 * d * d + 2 * d) + d + 1),
        "gates": 3 * (2 * d * d + d + 2 * d + 2) + (3 * d * d + d + 3 * d + 3),
        "final": 2 * (4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d) + (8 * d * d + 2 * d) + (2 * d + 1),
    }
    return sum(parts.values())


@pytest.mark.parametrize("preset,dims,d,millions", [
    ("mosi", (768, 5, 20), 192, 44.09), ("mosei", (768, 74, 35), 192, 36.70),
    ("mosi_d96", (768, 5, 20), 96, 11.51), ("mosei_d96", (768, 74, 35), 96, 9.66)])
def test_parameter_counts_equal_the_official_model(preset, dims, d, millions):
    spec = DatasetSpec("x", dims, (50, 50, 50))
    model = build("hme", spec, preset=preset, text_encoder="features")         # BERT: test_text_bert.py
    cfg = model.cfg
    assert cfg.d_model == d
    expected = official_count(d, dims, cfg.layers, cfg.latent_layers, cfg.hyper_depth, cfg.num_latents)
    assert model.n_params() == expected
    assert round(expected / 1e6, 2) == millions


def check_forward(model, data, n=6):
    b = make_batch(data.train, np.arange(n))
    model.on_epoch_start(0, data.train, "cpu", seed=0)
    model.train()
    out = model(model.train_batch(b, 0, 0))
    d = model.cfg.d_model
    assert out.pred.shape == (n,) and torch.isfinite(out.pred).all()
    assert out.aux["H"].shape == (n, 3, d)
    for k in ("present", "zeta", "sigma", "u", "yhat", "w3"):
        assert out.aux[k].shape == (n, 3), k
    assert out.aux["w2"].shape == (n, 3, 2)
    terms = model.loss(b, out)
    assert set(terms) == {"task", "vib", "kl", "total"}
    terms["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("preset", ["mosi", "mosei"])
def test_paper_preset_shapes_on_real_shaped_data(aligned, preset):
    torch.manual_seed(0)
    data = aligned[preset]
    check_forward(build("hme", data.spec, preset=preset, text_encoder="features", d_model=32, heads=16), data)


def test_synth_preset_shapes(synth_smoke):
    torch.manual_seed(0)
    check_forward(build("hme", synth_smoke.spec, preset="synth"), synth_smoke, n=8)


def test_paper_presets_carry_the_official_recipe():
    for name in ("mosi", "mosei", "mosi_d96", "mosei_d96"):
        cfg = HMEConfig.preset(name)
        assert {k: getattr(cfg, k) for k in HMEConfig.OFFICIAL} == HMEConfig.OFFICIAL
        assert cfg.text_encoder == "bert-base-uncased" and cfg.similarity_threshold == 0.6
        assert (cfg.heads, cfg.num_latents, cfg.hyper_depth, cfg.conf_low, cfg.conf_high) == (16, 5, 3, 0.2, 1.0)
        assert (cfg.aux_weight, cfg.kl_weight) == (0.8, 0.01)
        tc = cfg.train_config()
        assert (tc.schedule, tc.lr, tc.batch_size, tc.eval_batch_size, tc.grad_clip, tc.clip_mode,
                tc.reset_optimizer, tc.patience, tc.select_on) == ("constant", 2e-5, 256, 128, 0.8, "value",
                                                                   True, 10, "loss")
    assert (HMEConfig.preset("mosi").layers, HMEConfig.preset("mosi").train_missing_rate) == (4, 0.2)
    assert (HMEConfig.preset("mosei").latent_layers, HMEConfig.preset("mosei").train_missing_rate) == (3, 0.1)
    synth = HMEConfig.preset("synth")
    assert synth.recipe == "book" and synth.retrieval == "bank" and synth.text_encoder == "features"
    with pytest.raises(KeyError, match="unknown preset"):
        HMEConfig.preset("sims")


def test_bad_switches_are_refused(tiny):
    with pytest.raises(ValueError, match="retrieval"):
        build("hme", tiny.spec, **SMALL, retrieval="knn")
    with pytest.raises(ValueError, match="divisible"):
        build("hme", tiny.spec, preset="synth", d_model=18, heads=4)


# ----------------------------------------------------------------------------- retrieval
def test_retrieval_averages_the_neighbours_above_the_threshold():
    h = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, -0.1]])
    ok = torch.ones(4, dtype=torch.bool)
    eye = torch.eye(4, dtype=torch.bool)
    mean, W = retrieve(h, ok, h, ok, ok, 0.6, eye)
    assert torch.allclose(W[0], torch.tensor([0.0, 0.5, 0.0, 0.5]))       # not itself, not sample 2
    assert torch.allclose(mean[0], (h[1] + h[3]) / 2)
    assert torch.allclose(W[2], torch.full((4,), 0.25))                      # no neighbour: the mean of all


def test_a_missing_modality_borrows_only_from_samples_that_have_it(tiny):
    torch.manual_seed(0)
    model = build("hme", tiny.spec, **SMALL, retrieval="batch").eval()
    keep = np.ones((len(tiny.test), 3), dtype=bool)
    keep[:8, 1] = False                                                        # audio removed in half the batch
    both = apply_keep_matrix(make_batch(tiny.test, np.arange(16)), keep)
    with torch.no_grad():
        out = model(both)
    W = out.aux["retrieval"][1]                                                # audio: (16, 16)
    assert not out.aux["present"][:8, 1].any() and out.aux["present"][8:, 1].all()
    assert torch.allclose(W.sum(1), torch.ones(16))
    assert (W[:, :8] == 0).all()                                               # nobody borrows a missing audio


def test_official_zero_test_sees_a_missing_modality_at_initialisation(tiny):
    """Gotcha 2 of the spec: with the code's initialisation a zeroed modality pools to exactly 0."""
    torch.manual_seed(0)
    model = build("hme", tiny.spec, **SMALL, availability="zero", init="bert", retrieval="batch").eval()
    b = apply_pattern(make_batch(tiny.test, np.arange(6)), "tv")
    with torch.no_grad():
        out = model(b)
    assert (out.aux["H"][:, 1] == 0).all()
    assert out.aux["present"].tolist() == [[True, False, True]] * 6


def test_bank_predictions_do_not_depend_on_the_batch_but_in_batch_ones_do(tiny):
    torch.manual_seed(0)
    results = {}
    for mode in ("bank", "batch"):
        torch.manual_seed(0)
        model = build("hme", tiny.spec, **SMALL, retrieval=mode)
        fit(model, tiny, TrainConfig(epochs=1, batch_size=32, lr=1e-3))
        model.eval()
        test = tiny.test
        preds = []
        for order in (np.arange(len(test)), np.random.default_rng(1).permutation(len(test))):
            p = np.zeros(len(test))
            with torch.no_grad():
                for chunk in np.array_split(order, 4):                        # batches of 8, two compositions
                    b = make_batch(test, chunk)
                    p[chunk] = model(b).pred.numpy()
            preds.append(p)
        results[mode] = np.abs(preds[0] - preds[1]).max()
    assert results["bank"] < 1e-5
    assert results["batch"] > 1e-3


def test_bank_is_filled_during_training_and_travels_with_the_weights(tiny):
    torch.manual_seed(0)
    model = build("hme", tiny.spec, **SMALL)
    fit(model, tiny, TrainConfig(epochs=2, batch_size=32, lr=1e-3))
    assert model.bank.shape == (len(tiny.train), 3, 16)
    assert model.bank_present.any(dim=1).all()                                 # every training clip written ...
    assert not model.bank_present.all()                                        # ... as the epoch's masks left it
    assert (model.bank.abs().sum(-1) > 0).all()
    fresh = build("hme", tiny.spec, **SMALL)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.bank, model.bank)
    model.eval(), fresh.eval()
    b = make_batch(tiny.test, np.arange(8))
    with torch.no_grad():
        assert torch.allclose(model(b).pred, fresh(b).pred)
        W = model(b).aux["retrieval"][0]
    assert W.shape == (8, len(tiny.train))


# ----------------------------------------------------------------------------- uncertainty
def test_confidence_is_clamped_and_grows_as_sigma_shrinks():
    sigma = torch.logspace(-3, 1, 50)[:, None].expand(-1, 4)                   # mean std 0.001 ... 10
    zeta = confidence(sigma, 0.2, 1.0)
    assert zeta.min() == pytest.approx(0.2) and zeta.max() == pytest.approx(1.0)
    assert (zeta.diff() <= 0).all() and (zeta[:-1] > zeta[1:]).any()          # larger sigma, less confidence
    assert confidence(torch.full((1, 4), 2.0), 0.2, 1.0).item() == pytest.approx(0.5)


def test_sigma_starts_near_softplus_of_minus_five(tiny):
    torch.manual_seed(0)
    model = build("hme", tiny.spec, **SMALL, init="bert").eval()
    with torch.no_grad():
        out = model(make_batch(tiny.test, np.arange(8)))
    assert torch.allclose(out.aux["sigma"], torch.full_like(out.aux["sigma"], 0.0067), atol=0.002)
    assert (out.aux["zeta"] == 1.0).all()                                      # 1/0.0067 is clamped to t_u


def test_vib_noise_at_evaluation_is_a_switch(tiny):
    b = make_batch(tiny.test, np.arange(8))
    for sample, same in ((False, True), (True, False)):
        torch.manual_seed(0)
        model = build("hme", tiny.spec, **SMALL, sample_at_eval=sample, sigma_shift=0.0).eval()
        with torch.no_grad():
            a, c = model(b).pred, model(b).pred
        assert torch.equal(a, c) == same


@pytest.mark.parametrize("switch,check", [
    ("use_retrieval", lambda out: out.aux["retrieval"] == []),
    ("use_vib", lambda out: "kl" not in out.aux and (out.aux["zeta"] == 1).all()),
    ("use_uncertainty", lambda out: (out.aux["zeta"] == 1).all() and out.aux["u"] is None)])
def test_ablation_switches(tiny, switch, check):
    torch.manual_seed(0)
    model = build("hme", tiny.spec, **SMALL, sigma_shift=-2.0, **{switch: False})
    b = make_batch(tiny.train, np.arange(8))
    out = model(b)
    assert check(out)
    model.loss(b, out)["total"].backward()


# ----------------------------------------------------------------------------- missing modalities
def test_every_pattern_and_missing_rate_gives_finite_predictions(tiny):
    torch.manual_seed(0)
    model = build("hme", tiny.spec, **SMALL).eval()
    assert_finite_when_modalities_go_missing(model, tiny.test)
    sweep = robustness_sweep(model, tiny.test, tiny.spec, protocol="modality")
    assert len(sweep) == 8 and np.isfinite(sweep["MAE"]).all()


def test_training_keep_matrix_one_rate_or_all_rates():
    one = train_keep_matrix(3000, 0.3, (), seed=0, epoch=0)
    assert abs(one.mean() - 0.7) < 0.005 and one.any(axis=1).all()
    assert not np.array_equal(one, train_keep_matrix(3000, 0.3, (), seed=0, epoch=1))   # fresh every epoch
    rates = (0.0, 0.7)
    mixed = train_keep_matrix(3000, 0.0, rates, seed=0, epoch=0)
    kept = mixed.sum(axis=1)
    assert set(np.unique(kept)) == {1, 3}                                      # complete or unimodal
    assert 0.4 < (kept == 3).mean() < 0.6
    assert train_keep_matrix(50, 0.0, (), seed=0, epoch=0).all()


def test_the_trainer_applies_the_models_missingness(tiny):
    torch.manual_seed(0)
    model = build("hme", tiny.spec, **SMALL, train_missing_rate=0.7, train_missing_rates=())
    model.on_epoch_start(0, tiny.train, "cpu", seed=0)
    b = model.train_batch(make_batch(tiny.train, np.arange(32)), 0, 0)
    assert (b.present().sum(1) == 1).all()                                     # MR 0.7: one modality each
    baseline = build("early_fusion", tiny.spec, train_missing_rates=(0.0, 0.7))   # same sampling, any model
    baseline.on_epoch_start(0, tiny.train, "cpu", seed=0)
    kept = baseline.train_batch(make_batch(tiny.train, np.arange(96)), 0, 0).present().sum(1)
    assert set(kept.tolist()) == {1, 3}
    clean = build("early_fusion", tiny.spec)
    clean.on_epoch_start(0, tiny.train, "cpu", seed=0)
    assert clean.train_batch(make_batch(tiny.train, np.arange(96)), 0, 0).present().all()


def test_overfits_a_tiny_batch(tiny, fit_batch):
    torch.manual_seed(0)
    model = build("hme", tiny.spec, **SMALL, attn_dropout=0.0, relu_dropout=0.0, res_dropout=0.0,
                  embed_dropout=0.0, gate_dropout=0.0, out_dropout=0.0)
    b = make_batch(tiny.train, np.arange(8))
    hist = fit_batch(model, b, steps=150, lr=3e-3)
    assert hist[-1]["task"] < 0.25 * hist[0]["task"]


# ----------------------------------------------------------------------------- official recipe pieces
def test_bert_initialisation_reaches_every_linear_but_the_projections(tiny):
    torch.manual_seed(0)
    model = build("hme", tiny.spec, **{**SMALL, "d_model": 64, "heads": 4}, init="bert")
    w = model.head[0].weight.detach()
    assert abs(float(w.std()) - 0.02) < 0.003 and (model.head[0].bias == 0).all()
    with torch.no_grad():
        assert float(model.proj["audio"].weight.std()) > 0.05                 # PyTorch's default kept
        assert float(model.encoder["text"].layers[0].attn.in_proj.weight.std()) > 0.05   # Xavier kept


def test_official_weight_decay_groups_by_name(tiny):
    model = build("hme", tiny.spec, **SMALL, recipe="official")
    decay, plain = model.param_groups(1e-4)
    assert sum(p.numel() for p in decay["params"]) + sum(p.numel() for p in plain["params"]) == model.n_params()
    assert any(p is model.encoder["text"].norm.weight for p in decay["params"])     # not named LayerNorm
    assert all(p.dim() == 1 for p in plain["params"])


def test_trainer_resets_adam_every_epoch_and_clips_by_value(tiny, monkeypatch):
    seen = []
    real = torch.optim.AdamW

    def spy(*args, **kwargs):
        opt = real(*args, **kwargs)
        seen.append(opt)
        return opt
    monkeypatch.setattr(torch.optim, "AdamW", spy)
    torch.manual_seed(0)
    fit(build("hme", tiny.spec, **SMALL), tiny, TrainConfig(epochs=3, batch_size=32, reset_optimizer=True,
                                                          grad_clip=0.8, clip_mode="value", schedule="constant"))
    assert len(seen) == 3
    assert all(max(int(s["step"]) for s in o.state.values()) == 3 for o in seen)   # 96 / 32 steps each
    with pytest.raises(ValueError, match="clip_mode"):
        fit(build("hme", tiny.spec, **SMALL), tiny, TrainConfig(epochs=1, clip_mode="max"))
