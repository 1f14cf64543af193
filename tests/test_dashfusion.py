"""DashFusion (msa_lib/models/dashfusion.py): shapes, parameter counts, the contrastive
loss, companion retrieval, the bottleneck schedule, missing data, learning, gradients."""
import math

import numpy as np
import pytest
import torch

from msa_lib.data import load
from msa_lib.data.batch import make_batch
from msa_lib.data.fixtures import write_mmsa_fixture
from msa_lib.missing import PATTERNS, apply_pattern, random_missing
from msa_lib.models import build, make_config
from msa_lib.models import dashfusion as D


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    return {kind: load(write_mmsa_fixture(root / f"{kind}.pkl", kind, sizes=(24, 8, 8)))
            for kind in ("mosi_unaligned", "mosei_unaligned", "sims")}


PRESET_OF = {"mosi_unaligned": "mosi", "mosei_unaligned": "mosei", "sims": "sims"}


@pytest.mark.parametrize("kind", list(PRESET_OF))
def test_shapes_on_real_shapes(fixtures, kind):
    data = fixtures[kind]
    torch.manual_seed(0)
    model = build("dashfusion", data.spec, preset=PRESET_OF[kind], text_encoder="features").eval()
    b = make_batch(data.train, np.arange(3))
    out = model(b)
    lt, la, lv = data.spec.lengths
    assert out.pred.shape == (3,) and torch.isfinite(out.pred).all()
    assert out.aux["ta_attention"]["audio"].shape == (3, 8, lt, la + 1)
    assert out.aux["ta_attention"]["vision"].shape == (3, 8, lt, lv + 1)
    for m in "tav":
        assert out.aux[m].shape == (3, 128)
    assert out.aux["fused"].shape == (3, 512)
    sizes = out.aux["bottleneck_sizes"]
    for lvl, k in enumerate(sizes):
        assert out.aux["bottleneck_attention"][lvl]["audio"].shape == (3, 8, k, la + 1)
        assert out.aux["bottleneck_attention"][lvl]["text"].shape == (3, 8, k, lt)


def test_shapes_synth(synth_smoke):
    torch.manual_seed(0)
    model = build("dashfusion", synth_smoke.spec, preset="synth")
    model.on_epoch_start(0, synth_smoke.train, "cpu")
    model.train()
    b = make_batch(synth_smoke.train, np.arange(5))
    out = model(b)
    c = model.cfg.n_companions_each
    assert out.pred.shape == (5,)
    assert out.aux["companions"].shape == (5, 3 * c)
    terms = model.loss(b, out)
    assert set(terms) == {"task", "contrastive", "total"}
    assert torch.isclose(terms["total"], terms["task"] + model.cfg.con_weight * terms["contrastive"])
    model.eval()
    assert "contrastive" not in model(b).aux            # evaluation: MSE only, no companions


# Parameter counts (BERT excluded), d = 128, 8 heads, FFN 256. The spec's official counts
# (specs/dashfusion.md section 8) include modules the official code builds but never calls;
# the paper presets build them too (build_unused, part of recipe="official"); without them
# the official count = ours + that dead weight, exactly:
#   each frame encoder owns an unused Linear(D_in -> 128) and an unused Linear(128 -> 128)
#   = (129 * D_in... precisely D_in*128 + 128) + 16,512;
#   temporal alignment owns an unused FFN 128->128->128 (2 * 16,512) and two LayerNorms (2 * 256)
#   = 33,536.
# MOSI  (audio D=5,  vision D=20):  (768 + 16,512) + (2,688 + 16,512) + 33,536 = 70,016;
#       official 2,482,433 (114,944 + 331,520 + 351,360 + 230,272 + 1,289,984 + 164,353) -> ours 2,412,417.
# MOSEI (audio D=74, vision D=35): (9,600 + 16,512) + (4,608 + 16,512) + 33,536 = 80,768;
#       official 3,694,849 (114,944 + 630,144 + 620,160 + 230,272 + 1,934,976 + 164,353) -> ours 3,614,081.
# SIMS  (audio D=33, vision D=709): (4,352 + 16,512) + (90,880 + 16,512) + 33,536 = 161,792;
#       official 2,612,225 (114,944 + 341,888 + 470,784 + 230,272 + 1,289,984 + 164,353) -> ours 2,450,433.
OFFICIAL = {"mosi_unaligned": (2_482_433, 70_016), "mosei_unaligned": (3_694_849, 80_768),
            "sims": (2_612_225, 161_792)}


@pytest.mark.parametrize("kind", list(OFFICIAL))
def test_parameter_count_matches_official(fixtures, kind):
    official, dead = OFFICIAL[kind]
    model = build("dashfusion", fixtures[kind].spec, preset=PRESET_OF[kind], text_encoder="features",
                  build_unused=False)
    n = model.n_params()
    assert n + dead == official, (kind, n, official - dead)
    # per-component checks against the spec's table (used parts only)
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(model.text) == 114_944
    assert count(model.head) == 164_353
    assert count(model.fusion) == 644_992 * model.cfg.hbf_depth
    assert count(model.align) == 230_272 - 33_536
    # with the never-called modules built too, the count is the official one exactly,
    # and the predictions do not change (the extra modules are never called)
    full = build("dashfusion", fixtures[kind].spec, preset=PRESET_OF[kind], text_encoder="features")
    assert full.n_params() == official
    full.load_state_dict(model.state_dict(), strict=False)
    b = make_batch(fixtures[kind].train, np.arange(3))
    assert torch.allclose(full.eval()(b).pred, model.eval()(b).pred)


def test_presets_follow_official_config():
    mosi, mosei, sims = (make_config("dashfusion", preset=p) for p in ("mosi", "mosei", "sims"))
    assert (mosi.encoder_layers, mosei.encoder_layers, sims.encoder_layers) == (2, 4, 2)
    assert (mosi.hbf_depth, mosei.hbf_depth, sims.hbf_depth) == (2, 3, 2)
    assert (mosi.lr, mosei.lr, sims.lr) == (5e-5, 2e-5, 5e-5)
    assert (mosi.batch_size, mosei.batch_size, sims.batch_size) == (16, 8, 16)
    assert mosi.encoder_dropout == 0.5 and mosi.tau == 0.5 and mosi.con_weight == 0.2 and mosi.loss == "mse"
    assert sims.label_mode == "exact" and mosi.label_mode == "round"
    tc = mosi.train_config()
    assert tc.lr == 5e-5 and tc.batch_size == 16 and tc.schedule == "linear" and tc.grad_clip is None
    assert math.isclose(tc.warmup, 10 / 100)


# ---- the contrastive loss ---------------------------------------------------------------

def test_contrastive_loss_hand_computed():
    # rows: u = (1, 0), p = (0, 1), n = (-1, 0); positives (u, p) and (p, n); negative (u, n).
    # l(u, p) = -log e^{0/0.5} / (e^{0/0.5} + e^{-1/0.5}) = log(1 + e^{-2});
    # l(p, n) has no negatives attached to row p: -log e^s / e^s = 0.
    emb = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]]])    # norms differ: cosine ignores them
    pos, neg = [(0, 1), (1, 2)], [(0, 2)]
    expected = math.log(1 + math.exp(-2))
    got_official = D.contrastive_loss(emb, pos, neg, tau=0.5, reduction="official")
    got_active = D.contrastive_loss(emb, pos, neg, tau=0.5, reduction="active")
    assert math.isclose(got_official.item(), expected / 2, rel_tol=1e-5)
    assert math.isclose(got_active.item(), expected, rel_tol=1e-5)


def _loop_reference(emb, tau=0.5):
    """The spec's per-anchor formula, written as plainly as possible (section 3.4.3)."""
    total = 0.0
    for e in emb:                                                    # anchors
        z = torch.nn.functional.normalize(e, dim=-1).double()
        s = lambda i, j: float(z[i] @ z[j]) / tau                    # noqa: E731
        T, V, A, Fg = 0, 7, 14, 21
        def ell(u, p, group):                                        # negatives of row u: group rows 3..6
            negs = [math.exp(s(u, group + j)) for j in range(3, 7)]
            return -math.log(math.exp(s(u, p)) / (math.exp(s(u, p)) + sum(negs)))
        terms = [ell(T, V, T), ell(T, A, T)]
        terms += [ell(g, g + k, g) for g in (T, V, A, Fg) for k in (1, 2)]
        total += sum(terms) / 22                                     # 12 more pairs contribute 0
    return total / len(emb)


def test_contrastive_loss_matches_per_anchor_formula():
    torch.manual_seed(1)
    emb = torch.randn(3, 28, 5)
    pos, neg = D.contrastive_pairs(2)
    assert len(pos) == 22 and len(neg) == 16
    assert math.isclose(D.contrastive_loss(emb, pos, neg, 0.5).item(), _loop_reference(emb), rel_tol=1e-5)


def test_contrastive_loss_sign_and_scale():
    pos, neg = D.contrastive_pairs(2)
    base = torch.randn(4, 1, 16)
    # aligned: every sample of a group equals the anchor except negatives, which are opposite
    sign = torch.tensor([1, 1, 1, -1, -1, -1, -1], dtype=torch.float32).repeat(4)[None, :, None]
    aligned = base * sign
    anti = base * -sign
    anti[:, [0, 7, 14, 21]] = base                                   # anchors stay, everything else flips
    lo, hi = D.contrastive_loss(aligned, pos, neg), D.contrastive_loss(anti, pos, neg)
    assert lo < hi
    # random high-dimensional embeddings: cosines ~ 0, so each active pair costs ~ log(1 + 4),
    # and 10 of the 22 pairs are active
    torch.manual_seed(0)
    rand = D.contrastive_loss(torch.randn(64, 28, 512), pos, neg)
    assert abs(rand.item() - 10 / 22 * math.log(5)) < 0.03
    assert abs(D.contrastive_loss(torch.randn(64, 28, 512), pos, neg, reduction="active").item() - math.log(5)) < 0.05


def test_model_contrastive_at_init_has_log_scale(synth_smoke):
    torch.manual_seed(0)
    model = build("dashfusion", synth_smoke.spec, preset="synth", n_companions_each=2)
    model.on_epoch_start(0, synth_smoke.train, "cpu")
    model.train()
    con = model(make_batch(synth_smoke.train, np.arange(16))).aux["contrastive"].item()
    # each of the 10 active pairs lies in (0, log(1 + 4 e^{4})) (cosines in [-1, 1], tau 0.5)
    assert 0.0 < con < 10 / 22 * math.log(1 + 4 * math.exp(4))
    assert 0.2 < con / (10 / 22 * math.log(5)) < 2.0


# ---- companion retrieval ----------------------------------------------------------------

def _toy_embeddings(n=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.uniform(-3, 3, n).astype(np.float32)
    emb = torch.from_numpy(rng.normal(size=(n, 6)).astype(np.float32))
    emb[:, 0] += torch.from_numpy(labels)                            # similarity follows the label a bit
    return emb, labels


def test_companion_lists_have_intended_label_relations():
    emb, labels = _toy_embeddings()
    cls = D.label_classes(labels, "round")
    lists = D.companion_lists(emb, cls, top=10)
    n = len(labels)
    z = torch.nn.functional.normalize(emb, dim=-1)
    sim = (z @ z.T).numpy()
    for i in range(n):
        ss, sd, dd = (lists[k][i][lists[k][i] >= 0] for k in ("ss", "sd", "dd"))
        assert len(ss) > 0 and len(sd) > 0 and len(dd) > 0
        assert i not in ss and i not in sd and i not in dd          # the anchor itself is excluded
        assert np.all(cls[ss] == cls[i])
        assert np.all(cls[sd] != cls[i]) and np.all(cls[dd] != cls[i])
        assert np.all(np.diff(sim[i, ss]) <= 1e-6)                   # most similar first
        assert np.all(np.diff(sim[i, dd]) >= -1e-6)                  # least similar first
        other = cls != cls[i]
        assert sim[i, dd[0]] == pytest.approx(sim[i, other].min())
        assert sim[i, sd[0]] == pytest.approx(sim[i, other].max())


def test_faithful_switch_stores_rank_positions():
    emb, labels = _toy_embeddings(seed=1)
    cls = D.label_classes(labels, "round")
    faithful = D.companion_lists(emb, cls, top=10, faithful_rank_bug=True)
    z = torch.nn.functional.normalize(emb, dim=-1)
    order = torch.argsort(z @ z.T, dim=1, descending=True).numpy()
    for i in range(len(labels)):
        want = [j for j in range(len(labels)) if cls[order[i, j]] == cls[i] and j != i][:10]
        assert faithful["ss"][i][: len(want)].tolist() == want
    # rank positions grow along each row, so the "positives" are low dataset indices ...
    rows = [r[r >= 0] for r in faithful["ss"]]
    assert all(np.all(np.diff(r) > 0) for r in rows)
    # ... and the dd list holds the last positions (N - 1, N - 2, ... unless their label matches)
    assert np.median(faithful["dd"][:, 0]) >= len(labels) - 3
    intended = D.companion_lists(emb, cls, top=10)
    agree = lambda lst: np.mean([np.mean(cls[r[r >= 0]] == cls[i]) for i, r in enumerate(lst)])  # noqa: E731
    assert agree(intended["ss"]) == 1.0 and agree(faithful["ss"]) < 0.6


def test_label_modes():
    lab = np.array([0.4, 0.6, -0.5, 1.5, 2.5], np.float32)
    assert D.label_classes(lab, "round").tolist() == [0, 1, 0, 2, 2]   # half to even, like NumPy
    sims = np.array([0.2, 0.2, 0.4, -0.2], np.float32)
    c = D.label_classes(sims, "exact")
    assert c[0] == c[1] and c[1] != c[2] and c[0] != c[3]


def test_sample_companions_respects_lists():
    lists = {"ss": np.array([[1, 2, -1], [0, -1, -1]]), "dd": np.array([[3, 4, 5], [5, 4, -1]]),
             "sd": np.array([[6, -1, -1], [7, 8, 9]])}
    comp = D.sample_companions(lists, np.array([0, 1]), 2, np.random.default_rng(0))
    assert comp.shape == (2, 6)
    assert set(comp[0, :2]) == {1, 2} and set(comp[0, 2:4]) <= {3, 4, 5} and list(comp[0, 4:]) == [6, 6]
    assert list(comp[1, :2]) == [0, 0] and set(comp[1, 4:]) <= {7, 8, 9} and comp[1, 4] != comp[1, 5]


def test_model_companions_have_label_relations(synth_smoke):
    torch.manual_seed(0)
    model = build("dashfusion", synth_smoke.spec, preset="synth", n_companions_each=2)
    model.on_epoch_start(0, synth_smoke.train, "cpu")
    model.train()
    b = make_batch(synth_smoke.train, np.arange(20, 52))
    comp = model(b).aux["companions"].numpy()
    cls = D.label_classes(synth_smoke.train.label, "round")
    anchor = cls[b.index.numpy()][:, None]
    assert np.all(cls[comp[:, :2]] == anchor)                       # ss: same label
    assert np.all(cls[comp[:, 2:]] != anchor)                       # dd, sd: different label
    assert not np.any(comp == b.index.numpy()[:, None])


# ---- hierarchical bottleneck ------------------------------------------------------------

def test_bottleneck_token_counts(tiny):
    assert D.bottleneck_sizes(8, 2) == [8, 4] and D.bottleneck_sizes(8, 3) == [8, 4, 2]
    assert D.bottleneck_sizes(8, 3, hierarchical=False) == [8, 8, 8]
    b = make_batch(tiny.train, np.arange(4))
    for depth, flat, want in ((2, False, [8, 4]), (3, False, [8, 4, 2]), (2, True, [8, 8])):
        model = build("dashfusion", tiny.spec, preset="synth", hbf_depth=depth, hierarchical=not flat).eval()
        out = model(b)
        assert out.aux["bottleneck_sizes"] == want
        assert [lv["vision"].shape[2] for lv in out.aux["bottleneck_attention"]] == want


# ---- switches -----------------------------------------------------------------------------

def test_switches_change_the_model(tiny):
    b = make_batch(tiny.train, np.arange(6))
    torch.manual_seed(0)
    base = build("dashfusion", tiny.spec, preset="synth").eval()
    no_ta = build("dashfusion", tiny.spec, preset="synth", use_temporal_alignment=False).eval()
    assert no_ta.align is None and no_ta(b).aux["ta_attention"] == {}
    assert no_ta.n_params() < base.n_params()
    off = build("dashfusion", tiny.spec, preset="synth", official_masks=True).eval()
    off.load_state_dict(base.state_dict())
    # with masks, padded frames get no attention; without (official), they do
    w = base(b).aux["ta_attention"]["audio"]
    pad = ~torch.cat([torch.ones(6, 1, dtype=torch.bool), b.audio_mask], 1)
    assert torch.all(w.permute(0, 2, 1, 3)[pad[:, None, None, :].expand(-1, w.shape[2], w.shape[1], -1)] == 0)
    w_off = off(b).aux["ta_attention"]["audio"]
    assert w_off.permute(0, 2, 1, 3)[pad[:, None, None, :].expand(-1, w.shape[2], w.shape[1], -1)].sum() > 0
    assert not torch.allclose(base(b).pred, off(b).pred)
    no_con = build("dashfusion", tiny.spec, preset="synth", use_contrastive=False)
    no_con.on_epoch_start(0, tiny.train, "cpu")
    no_con.train()
    assert set(no_con.loss(b, no_con(b))) == {"task", "total"}


# ---- missing data -----------------------------------------------------------------------

@pytest.mark.parametrize("official_masks", [False, True])
def test_all_patterns_and_random_missing_are_finite(tiny, official_masks):
    torch.manual_seed(0)
    model = build("dashfusion", tiny.spec, preset="synth", official_masks=official_masks)
    model.on_epoch_start(0, tiny.train, "cpu")
    b = make_batch(tiny.train, np.arange(8))
    for train in (False, True):
        model.train(train)
        for p in PATTERNS:
            out = model(apply_pattern(b, p))
            assert out.pred.shape == (8,) and torch.isfinite(out.pred).all(), (p, train)
            assert torch.isfinite(model.loss(b, out)["total"])
        for r in (0.0, 0.5, 0.9, 1.0):
            out = model(random_missing(b, r, seed=3))
            assert torch.isfinite(out.pred).all() and torch.isfinite(model.loss(b, out)["total"]), r


# ---- learning -----------------------------------------------------------------------------

def test_overfits_a_tiny_batch(tiny, fit_batch):
    torch.manual_seed(0)
    model = build("dashfusion", tiny.spec, preset="synth", encoder_dropout=0.0, embed_dropout=0.0)
    model.on_epoch_start(0, tiny.train, "cpu")
    b = make_batch(tiny.train, np.arange(16))
    model.eval()
    first = torch.nn.functional.mse_loss(model(b).pred, b.label).item()
    fit_batch(model, b, 120)
    model.eval()
    final = torch.nn.functional.mse_loss(model(b).pred, b.label).item()
    assert final < 0.05 * first, (first, final)


@pytest.mark.parametrize("kw", [{}, {"use_temporal_alignment": False}, {"hierarchical": False}])
def test_gradients_reach_every_parameter(tiny, kw):
    torch.manual_seed(0)
    model = build("dashfusion", tiny.spec, preset="synth", **kw)
    model.on_epoch_start(0, tiny.train, "cpu")
    model.train()
    b = make_batch(tiny.train, np.arange(8))
    model.loss(b, model(b))["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_contrastive_gradient_reaches_companion_path(tiny):
    # the contrastive term alone moves the encoders (through anchors and companions)
    torch.manual_seed(0)
    model = build("dashfusion", tiny.spec, preset="synth")
    model.on_epoch_start(0, tiny.train, "cpu")
    model.train()
    out = model(make_batch(tiny.train, np.arange(8)))
    out.aux["contrastive"].backward()
    assert model.audio.inp.weight.grad.abs().sum() > 0 and model.align.out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.head.parameters())      # the head is not in the contrastive path


def test_readout_switch(tiny):
    """"first" reads position 0 of every stream (official); "mean" reads masked means."""
    b = make_batch(tiny.train, np.arange(6))
    torch.manual_seed(0)
    first = build("dashfusion", tiny.spec, preset="synth", readout="first").eval()
    mean = build("dashfusion", tiny.spec, preset="synth", readout="mean").eval()
    mean.load_state_dict(first.state_dict())
    h_first, h_mean = first(b).aux["fused"], mean(b).aux["fused"]
    d = first.cfg.d_model
    assert h_first.shape == h_mean.shape == (6, 4 * d)
    # the bottleneck part differs (token 0 vs mean of tokens); both are finite
    assert not torch.allclose(h_first[:, :d], h_mean[:, :d])
    assert torch.isfinite(h_mean).all()
    with pytest.raises(ValueError, match="readout"):
        build("dashfusion", tiny.spec, preset="synth", readout="cls").eval()(b)



# ---- the synth preset's departures: relative-time codes, the text layer ---------------------

def test_relative_times():
    mask = torch.tensor([[True, True, True, True, False], [True, True, False, False, False]])
    t = D.relative_times(mask)
    assert torch.allclose(t[0, :4], torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert torch.allclose(t[1, :2], torch.tensor([0.25, 0.75]))
    tc = D.relative_times(mask, cls=True)
    assert tc.shape == (2, 6) and torch.all(tc[:, 0] == -1) and torch.allclose(tc[:, 1:], t)


@pytest.mark.parametrize("dim", [8, 16, 32])
def test_time_codes_peak_at_equal_time(dim):
    t = torch.linspace(0, 1, 41)[None]                                   # (1, 41)
    c = D.time_codes(t, dim)[0]                                          # (41, dim)
    sim = c @ c.T
    assert torch.allclose(sim.diagonal(), torch.ones(41), atol=1e-5)     # unit length
    assert torch.equal(sim.argmax(1), torch.arange(41))                  # the best match is the same time
    assert (sim - torch.eye(41) * sim).max() < 1.0                       # strictly below the peak elsewhere
    assert torch.all(D.time_codes(torch.tensor([[-1.0]]), dim) == 0)     # CLS: no code


def test_time_codes_align_words_with_frames(tiny):
    """With q/k weights at zero only the codes score: each word attends most to the frame
    at the same relative time, whatever the two sequence lengths are."""
    b = make_batch(tiny.train, np.arange(6))
    torch.manual_seed(0)
    model = build("dashfusion", tiny.spec, preset="synth", align_time_codes=6.0).eval()
    with torch.no_grad():
        for p in [model.align.q.weight, *[model.align.k[m].weight for m in ("audio", "vision")]]:
            p.zero_()
    w = model(b).aux["ta_attention"]["audio"][:, 0]                        # (B, Lt, La+1), head 0
    for i in range(6):
        nt, na = int(b.text_mask[i].sum()), int(b.audio_mask[i].sum())
        want = ((torch.arange(nt) + 0.5) / nt * na).long().clamp(max=na - 1) + 1   # frame column (CLS = 0)
        got = w[i, :nt].argmax(-1)
        assert (got - want).abs().max() <= 1, (got, want)
    # without codes (the paper) and zero q/k weights the attention is uniform
    paper = build("dashfusion", tiny.spec, preset="synth", align_time_codes=0.0).eval()
    assert paper.align.time_gain is None
    with torch.no_grad():
        for p in [paper.align.q.weight, *[paper.align.k[m].weight for m in ("audio", "vision")]]:
            p.zero_()
    ent = D.alignment_entropy(paper, b)
    assert ent["audio"] == pytest.approx(1.0, abs=1e-5) and ent["vision"] == pytest.approx(1.0, abs=1e-5)
    assert D.alignment_entropy(model, b)["audio"] < 0.9


def test_text_layers_switch(tiny):
    b = make_batch(tiny.train, np.arange(4))
    with_layer = build("dashfusion", tiny.spec, preset="synth", text_layers=1)
    without = build("dashfusion", tiny.spec, preset="synth", text_layers=0)
    one_layer = sum(p.numel() for p in with_layer.text_layers[0].parameters())
    assert with_layer.n_params() - without.n_params() == one_layer > 0
    assert with_layer.eval()(b).pred.shape == without.eval()(b).pred.shape == (4,)
    # the paper presets keep both departures off
    for name in ("mosi", "mosei", "sims"):
        cfg = make_config("dashfusion", preset=name)
        assert cfg.text_layers == 0 and cfg.align_time_codes == 0.0


def test_one_encoder_pass_equals_two(tiny):
    """forward encodes anchors and companions in one pass; the contrastive term equals the
    one from encoding them separately (dropout off so both passes are deterministic)."""
    torch.manual_seed(0)
    model = build("dashfusion", tiny.spec, preset="synth", embed_dropout=0.0)
    model.on_epoch_start(0, tiny.train, "cpu")
    model.train()
    b = make_batch(tiny.train, np.arange(8))
    out = model(b)
    comp = out.aux["companions"].numpy()
    enc, c_enc = model.encode(b), model.encode(make_batch(tiny.train, comp.reshape(-1)))
    separate = model.companion_loss(enc, c_enc, comp.shape[1])
    assert torch.allclose(out.aux["contrastive"], separate, atol=1e-5)
    assert torch.allclose(out.pred, model.eval()(b).pred, atol=1e-5)    # anchors' prediction unchanged


def test_training_batches_are_cut_to_their_longest_sequence(tiny):
    torch.manual_seed(0)
    model = build("dashfusion", tiny.spec, preset="synth", embed_dropout=0.0, use_contrastive=False)
    b = make_batch(tiny.train, np.arange(6))
    b = b.replace(audio_mask=b.audio_mask & (torch.arange(b.audio.shape[1]) < 7),
                  audio_avail=b.audio_avail & (torch.arange(b.audio.shape[1]) < 7))   # at most 7 real frames
    train_out = model.train()(b)
    eval_out = model.eval()(b)
    assert train_out.aux["ta_attention"]["audio"].shape[-1] == 7 + 1                 # cut (CLS + 7)
    assert eval_out.aux["ta_attention"]["audio"].shape[-1] == b.audio.shape[1] + 1   # not cut
    assert torch.allclose(train_out.pred, eval_out.pred, atol=1e-5)                   # same result
    official = build("dashfusion", tiny.spec, preset="synth", official_masks=True, use_contrastive=False)
    assert official.train()(b).aux["ta_attention"]["audio"].shape[-1] == b.audio.shape[1] + 1  # pads attended
