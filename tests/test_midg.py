"""MIDG (msa_lib.models.midg, a reconstruction): shapes, the zero-initialised adapter, the
router, the simulated out-of-domain view, the entropy, the loss terms, ablations, presets."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_finite_when_modalities_go_missing

from msa_lib.data.batch import make_batch
from msa_lib.data.spec import DatasetSpec
from msa_lib.dg import cross_domain_partners
from msa_lib.models import build
from msa_lib.models.midg import MIDGConfig, MixtureOfInvariantExperts, binary_entropy, load_balance, router_kl, sample_beta
from msa_lib.train import TrainConfig

SMALL = dict(d_model=16, heads=2, adapter_dim=8, adapter_heads=2, encoder_layers=1)
TERMS = {"task", "ood", "cons", "route", "rex", "ent", "bal", "total"}

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest: one thread for this module


def small(spec, seed=0, **kw):
    torch.manual_seed(seed)
    return build("midg", spec, **{**SMALL, **kw})


@pytest.fixture(scope="module")
def batch(tiny):
    return make_batch(tiny.train, np.arange(12))          # domains 0, 1, 0, 1, ... (conftest)


# ------------------------------------------------------------------------------------- shapes
def test_output_shapes_in_training_and_evaluation(tiny, batch):
    model = small(tiny.spec).train()
    out = model(batch)
    B, d, E = len(batch), 16, 4
    shapes = {"h": (B, 3, d), "z": (B, d), "router": (B, E), "gate": (B, 3, d), "alpha": (3,),
              "h_ood": (B, 3, d), "partner": (B,), "pred_ood": (B,), "z_ood": (B, d), "router_ood": (B, E)}
    assert out.pred.shape == (B,)
    assert set(out.aux) == set(shapes)
    for key, shape in shapes.items():
        assert out.aux[key].shape == shape, key
        assert torch.isfinite(out.aux[key].float()).all(), key
    model.eval()
    out = model(batch)
    assert out.pred.shape == (B,)
    assert set(out.aux) == {"h", "z", "router", "gate", "alpha"}          # no simulated view


def test_head_input_is_z(tiny, batch):
    """representation_module() is the head and its (first) input is z (what msa_lib.dg reads)."""
    model = small(tiny.spec).eval()
    seen = []
    model.representation_module().register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0]))
    out = model(batch)
    assert model.representation_module() is model.head
    assert torch.equal(seen[0], out.aux["z"])


def test_evaluation_prediction_depends_on_the_clip_alone(tiny, batch):
    model = small(tiny.spec).eval()
    with torch.no_grad():
        together = model(batch).pred
        alone = model(make_batch(tiny.train, np.arange(1))).pred
    assert torch.allclose(together[:1], alone, atol=1e-5)


def test_missing_modalities_stay_finite(tiny):
    model = small(tiny.spec).eval()
    assert_finite_when_modalities_go_missing(model, tiny.train)


# ------------------------------------------------------------------------------ the adapter
def test_adapter_is_the_identity_at_initialisation_and_learns(tiny, batch):
    model = small(tiny.spec, dropout=0.0).train()
    with torch.no_grad():
        G, avail = model.backbones(batch)
        H = model.adapter(G, avail)
    assert all(torch.equal(h, g) for h, g in zip(H, G))                    # exactly, not approximately
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.loss(batch, model(batch))["total"].backward()
    assert model.adapter.up["text"].weight.grad.abs().sum() > 0
    opt.step()
    with torch.no_grad():
        H = model.adapter(G, avail)
    assert all(not torch.equal(h, g) for h, g in zip(H, G))


def test_adapter_torch_init_is_not_the_identity(tiny, batch):
    model = small(tiny.spec, adapter_init="torch").eval()
    with torch.no_grad():
        G, avail = model.backbones(batch)
        H = model.adapter(G, avail)
    assert not torch.equal(H[0], G[0])


# ------------------------------------------------------------------------------------ routing
@pytest.mark.parametrize("top_k", [None, 2])
def test_router_weights_sum_to_one(top_k):
    torch.manual_seed(0)
    moie = MixtureOfInvariantExperts(12, 8, n_experts=4, top_k=top_k)
    z, pi = moie(torch.randn(10, 12))
    assert z.shape == (10, 8) and pi.shape == (10, 4)
    assert torch.allclose(pi.sum(dim=1), torch.ones(10), atol=1e-6)
    assert (pi >= 0).all()
    nonzero = (pi > 0).sum(dim=1)
    assert (nonzero == (4 if top_k is None else top_k)).all()


def test_top_k_keeps_the_largest_weights():
    torch.manual_seed(0)
    dense = MixtureOfInvariantExperts(12, 8, n_experts=4)
    sparse = MixtureOfInvariantExperts(12, 8, n_experts=4, top_k=1)
    sparse.load_state_dict(dense.state_dict())
    u = torch.randn(10, 12)
    _, pi_dense = dense(u)
    z, pi = sparse(u)
    assert torch.equal(pi.argmax(dim=1), pi_dense.argmax(dim=1)) and torch.equal(pi.max(dim=1).values, torch.ones(10))
    expert = torch.stack([e(u) for e in sparse.experts], dim=1)[torch.arange(10), pi.argmax(dim=1)]
    assert torch.allclose(z, expert, atol=1e-6)
    with pytest.raises(ValueError, match="top_k"):
        MixtureOfInvariantExperts(12, 8, n_experts=4, top_k=5)


def test_load_balance_and_router_kl():
    uniform = torch.full((8, 4), 0.25)
    collapsed = torch.zeros(8, 4)
    collapsed[:, 2] = 1.0
    assert load_balance(uniform).abs() < 1e-6
    assert load_balance(collapsed) == pytest.approx(3.0)
    assert load_balance(collapsed) > 0
    assert router_kl(uniform, uniform).abs() < 1e-7
    assert router_kl(collapsed, uniform) == pytest.approx(math.log(4), rel=1e-5)
    assert torch.isfinite(router_kl(collapsed, collapsed))


# ------------------------------------------------------------------ disentanglement and the view
def test_binary_entropy_is_log2_at_one_half_and_maximal_there():
    grid = torch.linspace(0.0, 1.0, 21)
    values = torch.stack([binary_entropy(torch.full((4, 3, 8), float(v))) for v in grid])
    assert values.argmax() == 10                                           # g = 0.5
    assert values[10] == pytest.approx(math.log(2), abs=1e-6)
    assert values[0] < 1e-4 and values[-1] < 1e-4


def test_partners_cross_domains_and_form_a_permutation():
    domain = torch.tensor([0, 1] * 6)
    partner = cross_domain_partners(domain, torch.Generator().manual_seed(0))
    assert sorted(partner.tolist()) == list(range(12))                     # a permutation
    assert (domain[partner] != domain).all()
    again = cross_domain_partners(domain, torch.Generator().manual_seed(0))
    assert torch.equal(partner, again)                                     # deterministic given the generator
    # unbalanced: every minority clip leaves its domain, and as many majority clips as possible
    domain = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2])
    partner = cross_domain_partners(domain, torch.Generator().manual_seed(1))
    assert sorted(partner.tolist()) == list(range(8))
    assert (domain[partner][6:] != domain[6:]).all()
    assert int((domain[partner] != domain).sum()) == 2 * (8 - 6)
    # one domain: a permutation that moves every clip
    partner = cross_domain_partners(torch.zeros(5, dtype=torch.long), torch.Generator().manual_seed(2))
    assert sorted(partner.tolist()) == list(range(5)) and (partner != torch.arange(5)).all()


def test_simulated_view_keeps_the_invariant_part(tiny, batch):
    model = small(tiny.spec)
    dis = model.disentangler
    torch.manual_seed(3)
    h = torch.randn(12, 3, 16)
    inv, spec_part, g = dis(h)
    assert torch.allclose(inv + spec_part, h, atol=1e-6) and ((g > 0) & (g < 1)).all()
    partner = cross_domain_partners(batch.domain, torch.Generator().manual_seed(0))
    view = dis.simulate(inv, spec_part, batch.domain, torch.Generator().manual_seed(0))
    assert torch.equal(view, inv + spec_part[partner])                     # spec part permuted, inv unchanged
    assert (batch.domain[partner] != batch.domain).all()                   # pairs cross domains
    # MixStyle: a different invariant part changes the view by exactly that difference
    dis.mix = "mixstyle"
    other = torch.randn_like(inv)
    a = dis.simulate(inv, spec_part, batch.domain, torch.Generator().manual_seed(5))
    b = dis.simulate(other, spec_part, batch.domain, torch.Generator().manual_seed(5))
    assert torch.allclose(a - inv, b - other, atol=1e-6)
    assert not torch.allclose(a - inv, spec_part, atol=1e-3)               # the spec part was changed


def test_the_model_builds_its_view_from_the_gate(tiny, batch):
    model = small(tiny.spec).train()
    aux = model(batch).aux
    h, g, partner = aux["h"], aux["gate"], aux["partner"]
    assert torch.allclose(aux["h_ood"], g * h + ((1 - g) * h)[partner], atol=1e-6)
    assert (batch.domain[partner] != batch.domain).all()


def test_channel_mode_is_a_hard_gate(tiny, batch):
    model = small(tiny.spec, disentangle="channel", channel_rho=0.25).train()
    out = model(batch)
    g = out.aux["gate"]
    assert set(g.unique().tolist()) == {0.0, 1.0}
    assert ((g == 0).sum(dim=-1) == 4).all()                               # round(0.25 * 16) per modality
    terms = model.loss(batch, out)
    assert terms["ent"] == 0 and terms["ood"] > 0


def test_beta_draws_are_reproducible_and_u_shaped():
    a = sample_beta(0.1, 2000, torch.Generator().manual_seed(0))
    b = sample_beta(0.1, 2000, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and ((a >= 0) & (a <= 1)).all()
    assert abs(float(a.mean()) - 0.5) < 0.05                               # symmetric
    assert float(((a < 0.1) | (a > 0.9)).float().mean()) > 0.7             # Beta(0.1, 0.1): mass at the ends


# ----------------------------------------------------------------------------------- the loss
def test_loss_terms_and_gradients(tiny, batch):
    model = small(tiny.spec).train()
    out = model(batch)
    terms = model.loss(batch, out)
    assert set(terms) == TERMS
    assert torch.isfinite(terms["total"]) and terms["total"].dim() == 0
    for key in ("ood", "cons", "route", "rex", "ent", "bal"):
        assert terms[key] > 0, key
    cfg = model.cfg
    total = (terms["task"] + cfg.lambda_ood * terms["ood"] + cfg.lambda_inv * (terms["cons"] + terms["route"])
             + cfg.lambda_rex * terms["rex"] + cfg.lambda_ent * terms["ent"] + cfg.lambda_bal * terms["bal"])
    assert torch.allclose(terms["total"], total)
    assert terms["ent"] <= math.log(2) + 1e-6
    terms["total"].backward()
    reached = {"router": model.moie.router.weight, "expert": model.moie.experts[1][0].weight,
               "gate": model.disentangler.gate[2][0].weight, "adapter": model.adapter.up["audio"].weight}
    for name, p in reached.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_rex_is_the_variance_of_the_environment_risks(tiny, batch):
    model = small(tiny.spec).train()
    out = model(batch)
    terms = model.loss(batch, out)
    l1 = torch.nn.functional.l1_loss
    d = batch.domain
    risks = torch.stack([l1(out.pred[d == 0], batch.label[d == 0]), l1(out.pred[d == 1], batch.label[d == 1]),
                         l1(out.aux["pred_ood"], batch.label)])
    assert torch.allclose(terms["rex"], risks.var(unbiased=False))
    one_domain = batch.replace(domain=torch.zeros_like(batch.domain))
    model.disentangler = None                                              # no view: one environment left
    assert model.loss(one_domain, model(one_domain))["rex"] == 0


def test_evaluation_mode_has_only_the_task_term(tiny, batch):
    model = small(tiny.spec).eval()
    terms = model.loss(batch, model(batch))
    assert set(terms) == TERMS
    assert all(terms[k] == 0 for k in TERMS - {"task", "total"})
    assert torch.equal(terms["total"], terms["task"])


@pytest.mark.parametrize("switch,zeroed", [
    (dict(use_adapter=False), ()),
    (dict(use_disentangle=False), ("ood", "cons", "route", "ent")),
    (dict(n_experts=1), ("route", "bal")),
    (dict(use_moie=False), ("route", "bal")),
    (dict(top_k=2), ()),
    (dict(ood_mix="mixstyle"), ()),
])
def test_ablations_build_run_and_zero_their_terms(tiny, batch, switch, zeroed):
    full = small(tiny.spec)
    model = small(tiny.spec, **switch).train()
    out = model(batch)
    terms = model.loss(batch, out)
    assert set(terms) == TERMS and torch.isfinite(terms["total"])
    for key in TERMS - {"total"}:
        assert (terms[key] == 0) == (key in zeroed), key
    terms["total"].backward()
    if switch.get("use_adapter") is False:
        assert model.adapter is None and torch.equal(out.aux["alpha"], torch.zeros(3))
    if switch.get("use_disentangle") is False:
        assert model.disentangler is None and "pred_ood" not in out.aux
        assert torch.equal(out.aux["gate"], torch.ones_like(out.aux["gate"]))
    if switch.get("n_experts") == 1 or switch.get("use_moie") is False:
        assert model.moie.router is None and len(model.moie.experts) == 1
        assert torch.equal(out.aux["router"], torch.ones(len(batch), 1))
    if any(v is False for v in switch.values()) or switch.get("n_experts") == 1:
        assert model.n_params() < full.n_params()


def test_overfits_a_fixed_small_batch(tiny, batch, fit_batch):
    model = small(tiny.spec, dropout=0.0)
    history = fit_batch(model, batch, 30, lr=3e-3)
    assert history[-1]["task"] < 0.6 * history[0]["task"], (history[0]["task"], history[-1]["task"])


# ------------------------------------------------------------------------ presets and recipe
@pytest.mark.parametrize("preset,dims", [("synth", (384, 8, 8)), ("mosi", (768, 5, 20)),
                                         ("mosei", (768, 74, 35)), ("sims", (768, 33, 709))])
def test_presets_build_and_run(preset, dims):
    spec = DatasetSpec(preset, dims, (6, 7, 5))
    torch.manual_seed(0)
    model = build("midg", spec, preset=preset).eval()
    cfg = model.cfg
    assert cfg.text_encoder == "features" and not cfg.finetune_text
    B = 3
    b = make_batch_for(spec, B)
    out = model(b)
    assert out.pred.shape == (B,) and out.aux["router"].shape == (B, cfg.n_experts)
    tc = cfg.train_config()
    assert isinstance(tc, TrainConfig) and tc.schedule == "linear" and tc.warmup == 0.1 and tc.batch_size == 32
    if preset == "synth":
        assert (cfg.d_model, cfg.adapter_dim, cfg.heads, cfg.encoder_layers) == (64, 16, 4, 1)
        assert (tc.epochs, tc.lr) == (8, 1e-3)
    else:
        assert (cfg.d_model, cfg.adapter_dim, cfg.n_experts, cfg.encoder_layers, cfg.heads) == (128, 32, 4, 2, 8)
        assert (tc.lr, tc.weight_decay, tc.epochs, tc.grad_clip) == (1e-4, 1e-4, 30, 1.0)
    assert cfg.train_config(epochs=2).epochs == 2


def make_batch_for(spec, B):
    from msa_lib.data.batch import Batch
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(B, L, D, generator=g) for D, L in zip(spec.dims, spec.lengths)]
    masks = [torch.ones(B, L, dtype=torch.bool) for L in spec.lengths]
    return Batch(*feats, *masks, *[m.clone() for m in masks], label=torch.zeros(B), domain=torch.arange(B),
                 index=torch.arange(B), missing_rate=torch.zeros(B, 3))


def test_unknown_preset_names_the_choices():
    with pytest.raises(KeyError, match="mosei.*sims.*synth"):
        MIDGConfig.preset("nope")
    with pytest.raises(ValueError, match="disentangle"):
        build("midg", DatasetSpec("x", (4, 4, 4), (3, 3, 3)), disentangle="nope", **SMALL)


def test_param_groups_give_a_fine_tuned_text_encoder_its_own_lr(tiny):
    model = small(tiny.spec)
    assert len(model.param_groups(1e-4)) == 2 and all("lr" not in g for g in model.param_groups(1e-4))
    model.backbones.text.pretrained = torch.nn.Linear(4, 4)               # stands in for a trainable BERT
    groups = model.param_groups(1e-4)
    lm = {id(p) for p in model.backbones.text.pretrained.parameters()}
    assert "lr" not in groups[0]                                           # the trainer logs group 0's lr
    assert {id(p) for g in groups if g.get("lr") == 2e-5 for p in g["params"]} == lm
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
