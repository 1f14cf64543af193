"""LNLN (msa_lib.models.lnln): shapes, size, gradient reversal, completeness, robustness hooks."""
from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

from msa_lib.data import load
from msa_lib.data.batch import iterate, make_batch
from msa_lib.data.fixtures import write_mmsa_fixture
from msa_lib.missing import PATTERNS, apply_pattern, random_missing
from msa_lib.models import build, make_config
from msa_lib.models.lnln import LNLNConfig, lnln_train_corruption

# Parameter counts without BERT (text projection Linear(768 -> 128) included), from the spec, section 11.
SPEC_PARAMS = {"mosi": 6_483_012, "mosei": 7_102_404, "sims": 7_112_260}
FIXTURES = {"mosi": "mosi_unaligned", "mosei": "mosei_unaligned", "sims": "sims"}
SMALL = dict(preset="synth", d_model=16, n_tokens=4, heads=2, dim_head=8, hyper_dim_head=8, mlp_dim=32,
             head_hidden=16)


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest: one thread for this module


@pytest.fixture(scope="module")
def real_shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("lnln_fixtures")
    return {p: load(str(write_mmsa_fixture(root / f"{k}.pkl", k, sizes=(8, 4, 4)))) for p, k in FIXTURES.items()}


def check_shapes(model, data, batch_size=4):
    cfg = model.cfg
    T, d = cfg.n_tokens, cfg.d_model
    b = make_batch(data.train, np.arange(batch_size))
    model.eval()
    with torch.no_grad():
        out = model(b)
    assert out.pred.shape == (batch_size,) and torch.isfinite(out.pred).all()
    assert out.aux["w"].shape == (batch_size,)
    for k in ("H1_l", "H1_a", "H1_v", "H1_p", "H1_d", "H_hyper"):
        assert out.aux[k].shape == (batch_size, T, d), k
    assert out.aux["fused"].shape == (batch_size, T + 1, d)
    assert "disc_logits" not in out.aux and "rec" not in out.aux      # eval: no training branches
    model.train()
    tb = model.train_batch(b, epoch=0, seed=0)
    out = model(tb)
    assert out.aux["disc_logits"].shape == (2 * batch_size * T, 2)
    assert out.aux["disc_labels"].tolist() == [1] * (batch_size * T) + [0] * (batch_size * T)
    assert out.aux["rec"].shape == out.aux["rec_target"].shape == (batch_size, 3 * T, d)
    terms = model.loss(tb, out)
    assert set(terms) == {"sp", "cc", "adv", "rec", "total"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())
    terms["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("preset", ["mosi", "mosei", "sims"])
def test_real_shape_presets(real_shapes, preset):
    torch.manual_seed(0)
    data = real_shapes[preset]
    model = build("lnln", data.spec, preset=preset, text_encoder="features")   # BERT: test_text_bert.py
    check_shapes(model, data)
    assert model.n_params() == SPEC_PARAMS[preset]
    # training-only parts: 3 reconstructors and the discriminator (spec's breakdown, MOSI widths)
    train_only = sum(p.numel() for m in (model.reconstructor, model.discriminator) for p in m.parameters())
    assert train_only == 1_780_992 + 8_386


def test_synth_preset_shapes(synth_smoke):
    torch.manual_seed(0)
    check_shapes(build("lnln", synth_smoke.spec, preset="synth"), synth_smoke, batch_size=8)


def test_presets_are_the_official_configs(tiny):
    for name, fusion, beta in (("mosi", 2, 0.8), ("mosei", 4, 0.8), ("sims", 4, 0.6)):
        c = LNLNConfig.preset(name)
        assert (c.d_model, c.n_tokens, c.depth, c.fusion_depth, c.heads, c.dim_head, c.hyper_dim_head,
                c.mlp_dim, c.dropout) == (128, 8, 2, fusion, 8, 64, 16, 128, 0.0)
        assert (c.alpha, c.beta, c.gamma, c.delta) == (0.9, beta, 0.1, 1.0)
        assert (c.grl_on_main_path, c.discriminator_input, c.detach_rec_target) == (True, "mixed", False)
        tc = c.train_config()
        assert (tc.lr, tc.weight_decay, tc.batch_size, tc.epochs, tc.grad_clip) == (1e-4, 1e-4, 64, 200, None)
    with pytest.raises(KeyError, match="unknown preset"):
        LNLNConfig.preset("nope")
    with pytest.raises(ValueError, match="discriminator_input"):
        build("lnln", tiny.spec, discriminator_input="both")


def test_initialisation_follows_the_code(tiny):
    model = build("lnln", tiny.spec, **SMALL)
    assert torch.all(model.proxy.h_p == 1) and torch.all(model.h_hyper == 1)
    assert torch.all(model.embed["audio"].encoder.extra == 0) and torch.all(model.fusion.token == 0)
    std = build("lnln", tiny.spec, **{**SMALL, "pos_init_std": 1.0, "d_model": 64}).embed["audio"].encoder.pos.std()
    assert 0.9 < float(std.detach()) < 1.1                        # unscaled N(0, 1) position tables


def test_too_long_sequence_is_an_error(tiny):
    model = build("lnln", tiny.spec, **SMALL).eval()
    b = make_batch(tiny.train, np.arange(2))
    long = b.replace(audio=torch.cat([b.audio, b.audio], 1), audio_mask=torch.cat([b.audio_mask] * 2, 1),
                     audio_avail=torch.cat([b.audio_avail] * 2, 1))
    with pytest.raises(ValueError, match="position table"):
        model(long)


def _proxy_grads(model, batch, term):
    model.zero_grad()
    out = model(batch)
    model.loss(batch, out)[term].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads


def test_gradient_reversal_on_main_path_flips_the_sentiment_gradient(tiny):
    torch.manual_seed(0)
    official = build("lnln", tiny.spec, **SMALL, grl_on_main_path=True).train()
    literal = build("lnln", tiny.spec, **SMALL, grl_on_main_path=False).train()
    literal.load_state_dict(official.state_dict())
    batch = official.train_batch(make_batch(tiny.train, np.arange(16)), epoch=0, seed=0)
    g_off, g_lit = _proxy_grads(official, batch, "sp"), _proxy_grads(literal, batch, "sp")
    proxy = [n for n in g_off if n.startswith("proxy.")]
    assert proxy, "the sentiment loss does not reach the proxy generator"
    for n in proxy:                                       # L_sp into the proxy: reversed only on the main path
        assert torch.allclose(g_off[n], -g_lit[n], atol=1e-7), n
    assert any(g_off[n].abs().sum() > 0 for n in proxy)
    for n in ("head.weight", "checker.head.0.weight", "embed.text.proj.proj.weight"):
        assert torch.allclose(g_off[n], g_lit[n], atol=1e-6), n  # elsewhere: identical
    # L_adv reaches the proxy reversed in both readings
    a_off, a_lit = _proxy_grads(official, batch, "adv"), _proxy_grads(literal, batch, "adv")
    for n in proxy:
        assert torch.allclose(a_off[n], a_lit[n], atol=1e-6), n


def test_proxy_step_fools_the_discriminator(tiny):
    """A gradient step of the proxy generator *increases* L_adv (GRL), one of the discriminator lowers it."""
    torch.manual_seed(1)
    model = build("lnln", tiny.spec, **SMALL).train()
    batch = model.train_batch(make_batch(tiny.train, np.arange(32)), epoch=0, seed=0)

    def adv():
        return model.loss(batch, model(batch))["adv"]

    for part, sign in (("proxy", +1), ("discriminator", -1)):
        before = adv()
        model.zero_grad()
        before.backward()
        with torch.no_grad():
            for p in getattr(model, part).parameters():
                p -= 1e-3 * p.grad
        after = adv()
        assert sign * (after.item() - before.item()) > 0, (part, before.item(), after.item())


def test_discriminator_input_switch(tiny):
    torch.manual_seed(0)
    model = build("lnln", tiny.spec, **SMALL, discriminator_input="proxy").train()
    batch = model.train_batch(make_batch(tiny.train, np.arange(4)), epoch=0, seed=0)
    out = model(batch)
    n = 4 * model.cfg.n_tokens
    fake = model.discriminator(out.aux["H1_p"].reshape(-1, model.cfg.d_model))
    real = model.discriminator(out.aux["C1_l"].reshape(-1, model.cfg.d_model))
    assert torch.allclose(out.aux["disc_logits"][:n], fake) and torch.allclose(out.aux["disc_logits"][n:], real)
    mixed = build("lnln", tiny.spec, **SMALL).train()
    mixed.load_state_dict(model.state_dict())
    out = mixed(batch)
    fake = mixed.discriminator(out.aux["H1_d"].reshape(-1, model.cfg.d_model))
    assert torch.allclose(out.aux["disc_logits"][:n], fake)


def test_reconstruction_target_detach_switch(tiny):
    batch = make_batch(tiny.train, np.arange(4))
    for detach in (False, True):
        model = build("lnln", tiny.spec, **SMALL, detach_rec_target=detach).train()
        out = model(model.train_batch(batch, 0, 0))
        assert out.aux["rec_target"].requires_grad is (not detach)


def test_train_batch_samples_lnln_rates(tiny):
    model = build("lnln", tiny.spec, **SMALL)
    batch = make_batch(tiny.train, np.arange(96))
    b0, b1 = model.train_batch(batch, 0, 0), model.train_batch(batch, 1, 0)
    r = b0.missing_rate
    assert 0.3 < (r == 0).float().mean() < 0.7                       # about half complete per modality
    assert b0.clean is not None and torch.equal(b0.clean.text, batch.text)
    assert not torch.equal(r, b1.missing_rate)                        # fresh rates every epoch
    dropped = b0.text_mask & ~b0.text_avail
    assert dropped.any() and torch.allclose(b0.text[dropped], torch.full_like(b0.text[dropped], 0.5))  # unk
    assert torch.all(b0.audio[b0.audio_mask & ~b0.audio_avail] == 0)
    static = build("lnln", tiny.spec, **SMALL, legacy_static_masks=True)
    s0, s1 = static.train_batch(batch, 0, 0), static.train_batch(batch, 5, 0)
    assert torch.equal(s0.missing_rate, s1.missing_rate) and torch.equal(s0.text_avail, s1.text_avail)
    off = build("lnln", tiny.spec, **SMALL, train_missing=False).train_batch(batch, 0, 0)
    assert torch.all(off.missing_rate == 0) and off.clean is not None
    # no unk vector -> zeros
    from dataclasses import replace
    spec0 = replace(tiny.spec, unk_text_feature=None)
    z = lnln_train_corruption(batch, 0, 0, spec0)
    assert torch.all(z.text[z.text_mask & ~z.text_avail] == 0)


def test_corruption_helper_drives_a_baseline(tiny):
    base = build("early_fusion", tiny.spec, d_model=16)
    base.train_batch = functools.partial(lnln_train_corruption, spec=tiny.spec)
    b = base.train_batch(make_batch(tiny.train, np.arange(32)), 0, 0)
    assert (b.missing_rate > 0).any() and not torch.equal(b.text_avail, b.text_mask)


@pytest.mark.parametrize("switch,absent", [("use_dmc", ("w", "H1_p", "disc_logits")),
                                           ("use_dmml", ("H_hyper", "fused")),
                                           ("use_reconstructor", ("rec",))])
def test_ablation_switches(tiny, switch, absent):
    torch.manual_seed(0)
    full = build("lnln", tiny.spec, **SMALL)
    abl = build("lnln", tiny.spec, **SMALL, **{switch: False}).train()
    assert abl.n_params() < full.n_params()
    batch = abl.train_batch(make_batch(tiny.train, np.arange(8)), 0, 0)
    out = abl(batch)
    assert out.pred.shape == (8,)
    assert not any(k in out.aux for k in absent)
    if switch == "use_dmc":
        assert out.aux["H1_d"] is out.aux["H1_l"]
    terms = abl.loss(batch, out)
    terms["total"].backward()
    dropped = {"use_dmc": ("cc", "adv"), "use_dmml": (), "use_reconstructor": ("rec",)}[switch]
    assert all(terms[k] == 0 for k in dropped)


def test_every_pattern_and_rate_gives_finite_predictions(tiny):
    torch.manual_seed(0)
    model = build("lnln", tiny.spec, **SMALL).eval()
    b = make_batch(tiny.test, np.arange(16))
    with torch.no_grad():
        for p in PATTERNS:
            out = model(apply_pattern(b, p, text_fill="unk", unk_vector=tiny.spec.unk_vector))
            assert out.pred.shape == (16,) and torch.isfinite(out.pred).all(), p
        for r in [round(0.1 * i, 1) for i in range(10)] + [1.0]:
            out = model(random_missing(b, r, text_fill="unk", unk_vector=tiny.spec.unk_vector))
            assert torch.isfinite(out.pred).all() and torch.isfinite(out.aux["w"]).all(), r


def test_eval_mode_needs_no_clean_batch(tiny):
    model = build("lnln", tiny.spec, **SMALL)
    b = make_batch(tiny.test, np.arange(4))
    assert b.clean is None
    model.train()                                   # training mode without a clean batch: main path only
    out = model(b)
    terms = model.loss(b, out)
    assert terms["adv"] == 0 and terms["rec"] == 0 and terms["cc"] > 0
    model.eval()
    out = model(random_missing(b, 0.5))             # corrupted batch carries .clean, but eval ignores it
    assert "disc_logits" not in out.aux and "rec" not in out.aux


def test_overfits_a_tiny_batch(tiny, fit_batch):
    torch.manual_seed(0)
    model = build("lnln", tiny.spec, **SMALL, train_missing=False).train()
    b = model.train_batch(make_batch(tiny.train, np.arange(16)), 0, 0)
    first = fit_batch(model, b, 150)[0]["sp"]
    model.eval()
    final = torch.nn.functional.mse_loss(model(b).pred, b.label).item()
    assert final < 0.1 * first, (first, final)


def test_completeness_estimate_tracks_text_missing_rate(tiny):
    """After a short training on a toy set, w follows 1 - r on held-out batches at fixed rates.

    The checker is trained by L_cc alone here (the other weights 0), so the test is about
    the mechanism -- rates sampled per sample, target 1 - r, text tokens -> unk -- and not
    about how the other losses pull on w (chapter 4 shows that on SynthMSA).
    """
    torch.manual_seed(0)
    model = build("lnln", tiny.spec, **SMALL, beta=0.0, gamma=0.0, delta=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(25):
        for batch in iterate(tiny.train, 32, shuffle=True, seed=0, epoch=epoch):
            batch = model.train_batch(batch, epoch, seed=0)
            loss = model.loss(batch, model(batch))["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    rates = np.arange(10) / 10
    w = []
    held_out = make_batch(tiny.valid, np.arange(len(tiny.valid)))
    with torch.no_grad():
        for r in rates:
            b = random_missing(held_out, float(r), seed=3, text_fill="unk", unk_vector=tiny.spec.unk_vector)
            w.append(model(b).aux["w"].numpy())
    w = np.stack(w)                                                   # (rates, samples)
    assert np.corrcoef(w.mean(1), 1 - rates)[0, 1] > 0.8              # batch means follow 1 - r
    assert np.corrcoef(w.ravel(), np.repeat(1 - rates, w.shape[1]))[0, 1] > 0.6   # and single clips
    assert w[0].mean() - w[-1].mean() > 0.3                           # it spans a real range


def test_fit_runs_one_epoch(tiny):
    from msa_lib.train import fit
    torch.manual_seed(0)
    model = build("lnln", tiny.spec, **SMALL)
    res = fit(model, tiny, model.cfg.train_config(epochs=1, batch_size=32, lr=1e-3), device="cpu")
    assert {"train_sp", "train_cc", "train_adv", "train_rec", "train_total"} <= set(res.history.columns)
    assert np.isfinite(res.test["MAE"])


def test_config_is_registered():
    cfg = make_config("lnln", preset="sims", fusion_depth=2)
    assert isinstance(cfg, LNLNConfig) and cfg.beta == 0.6 and cfg.fusion_depth == 2
    assert copy.deepcopy(cfg) == cfg
