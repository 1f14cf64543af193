"""CyIN (msa_lib.models.cyin): sizes, the bottleneck, translators, the two stages, missing latents."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_finite_when_modalities_go_missing

from msa_lib.data import load
from msa_lib.data.batch import make_batch
from msa_lib.data.fixtures import write_mmsa_fixture
from msa_lib.data.spec import DatasetSpec
from msa_lib.missing import apply_pattern
from msa_lib.models import build
from msa_lib.models.cyin import CascadedResidualAE, CyINConfig, align, kl_standard_normal
from msa_lib.train import TrainConfig, fit, robustness_sweep

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest: one thread for this module
SMALL = dict(preset="synth", common_dim=16, ib_hidden=16, ib_dim=8, cra_layers=(8, 4), heads=2)


def official_count(dims, CU, Cib, CB, cra, blocks, nlevels, kernel=3):
    """Non-LM parameters of the released model, module by module (spec section 4.7)."""
    encoders = sum(d * Cib + Cib + Cib * 2 * CB + 2 * CB for d in dims)
    decoders = sum(CB * Cib + Cib + Cib * d + d for d in dims)
    projections = 3 * CB * CU * kernel
    mult = lambda d, n: n * (12 * d * d + 13 * d) + 2 * d                        # noqa: E731  MulT layers + final LN
    fusion = 6 * mult(CU, nlevels) + 3 * mult(2 * CU, max(nlevels, 3)) + 2 * (36 * CU * CU + 6 * CU) + 6 * CU + 1
    enc, dec = [CB, *cra], [*reversed(cra)]
    block = (sum(a * b * 3 for a, b in zip(enc[:-1], enc[1:])) + sum(a * b * 3 for a, b in zip(dec[:-1], dec[1:]))
             + dec[-1] * CB)
    translators = 3 * (blocks * block + 2 * CB * CB * 3)
    label_heads = 3 * (CB + 1)
    return encoders + decoders + projections + fusion + translators + label_heads


@pytest.mark.parametrize("preset,millions,widths", [
    ("mosi", 46.07, dict(CU=256, Cib=256, CB=128, cra=(64, 32, 16), blocks=8, nlevels=2)),
    ("mosei", 4.14, dict(CU=16, Cib=16, CB=256, cra=(128, 64, 32), blocks=4, nlevels=8))])
def test_parameter_counts_equal_the_released_configs(preset, millions, widths):
    dims = (768, 1024, 1024)                                        # BERT + ImageBind audio and vision
    model = build("cyin", DatasetSpec("x", dims, (50, 50, 50)), preset=preset, text_encoder="features")
    expected = official_count(dims, **widths)
    assert model.n_params() == expected and round(expected / 1e6, 2) == millions


@pytest.fixture(scope="module")
def real_shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cyin_fixtures")
    return {p: load(str(write_mmsa_fixture(root / f"{k}.pkl", k, sizes=(8, 4, 4))))
            for p, k in (("mosi", "mosi_unaligned"), ("mosei", "mosei_aligned"))}


def check_forward(model, data, n=4):
    model.on_epoch_start(0, data.train, "cpu", seed=0)
    b = make_batch(data.train, np.arange(n))
    for stage in (1, 2):
        model.stage = stage
        model.train()
        out = model(b)
        assert out.pred.shape == (n,) and out.aux["yhat"].shape == (n, 3)
        terms = model.loss(b, out)
        assert (terms["translation"] > 0) == (stage == 2)
        terms["total"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad()
    model.eval()
    with torch.no_grad():
        out = model(apply_pattern(b, "t"))
    assert torch.isfinite(out.pred).all()
    assert out.aux["B"]["audio"].shape == (n, model.cfg.ib_dim, data.spec.lengths[0])


@pytest.mark.parametrize("preset", ["mosi", "mosei"])
def test_paper_preset_shapes_on_real_shaped_data(real_shapes, preset):
    torch.manual_seed(0)
    data = real_shapes[preset]
    small = dict(common_dim=16, ib_hidden=16, ib_dim=16, heads=2, cra_blocks=2)
    check_forward(build("cyin", data.spec, preset=preset, text_encoder="features", **small), data)


def test_synth_preset_shapes(synth_smoke):
    torch.manual_seed(0)
    check_forward(build("cyin", synth_smoke.spec, preset="synth"), synth_smoke, n=6)


def test_presets_follow_the_released_configs():
    mosi, mosei = CyINConfig.preset("mosi"), CyINConfig.preset("mosei")
    assert (mosi.beta, mosi.gamma, mosi.stage_divide, mosi.lr, mosi.lr_text, mosi.grad_clip) == (16, 10, 0.1, 5e-4, 4e-5, 5.0)
    assert (mosei.beta, mosei.gamma, mosei.stage_divide, mosei.nlevels, mosei.heads) == (32, 5, 0.3, 8, 2)
    for cfg in (mosi, mosei):
        assert {k: getattr(cfg, k) for k in CyINConfig.OFFICIAL} == CyINConfig.OFFICIAL
        assert cfg.text_encoder == "bert-base-uncased"
        tc = cfg.train_config()
        assert (tc.schedule, tc.clip_mode, tc.select_on, tc.epochs, tc.batch_size) == ("constant", "value", "loss", 30, 128)
    assert CyINConfig(select_on="last").train_config().select_on == "last"     # the code's: no selection
    synth = CyINConfig.preset("synth")
    assert synth.recipe == "book" and synth.sample_at_eval is False


# ----------------------------------------------------------------------------- the pieces
def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(2, 4, 5)
    assert kl_standard_normal(zeros, zeros).item() == 0.0
    assert kl_standard_normal(zeros + 0.5, zeros).item() == pytest.approx(0.125)
    assert kl_standard_normal(zeros, zeros + 1.0).item() > 0


def test_alignment_pools_strided_or_contiguous_groups():
    x = torch.arange(6.0).view(1, 6, 1)                             # frames 0..5 onto 3 slots
    assert align(x, 3, "strided")[0, :, 0].tolist() == [1.5, 2.5, 3.5]   # (0,3), (1,4), (2,5)
    assert align(x, 3, "contiguous")[0, :, 0].tolist() == [0.5, 2.5, 4.5]
    y = torch.arange(4.0).view(1, 4, 1)                             # padded by repeating frame 3
    assert align(y, 3, "contiguous")[0, :, 0].tolist() == [0.5, 2.5, 3.0]
    assert torch.equal(align(x, 6), x)


def test_a_translator_learns_a_toy_pair_better_than_the_mean():
    torch.manual_seed(0)
    src = torch.randn(64, 8, 12)
    tgt = torch.roll(src, 1, dims=2) * 0.5 + src.flip(1)           # a fixed linear map of the source
    net = CascadedResidualAE(8, (8, 4), 2, 3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        loss = F.mse_loss(net(src), tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    mean_baseline = F.mse_loss(tgt.mean(0, keepdim=True).expand_as(tgt), tgt)
    assert F.mse_loss(net(src), tgt) < 0.2 * mean_baseline


def test_stage_one_leaves_the_translators_untouched(tiny):
    torch.manual_seed(0)
    model = build("cyin", tiny.spec, **SMALL, epochs=10, stage_divide=0.5)
    before = {k: v.clone() for k, v in model.translator.state_dict().items()}
    fit(model, tiny, TrainConfig(epochs=2, batch_size=32, lr=1e-3, select_on="last"))
    assert model.stage == 1
    assert all(torch.equal(before[k], v) for k, v in model.translator.state_dict().items())
    fit(model, tiny, TrainConfig(epochs=6, batch_size=32, lr=1e-3, select_on="last"))
    assert model.stage == 2
    assert not all(torch.equal(before[k], v) for k, v in model.translator.state_dict().items())


def test_missing_latents_are_translated_from_what_is_present(tiny):
    torch.manual_seed(0)
    model = build("cyin", tiny.spec, **SMALL).eval()
    b = make_batch(tiny.test, np.arange(6))
    with torch.no_grad():
        full = model(b)
        no_text = model(apply_pattern(b, "av"))
        only_audio = model(apply_pattern(b, "a"))
    T = no_text.aux["translated"]
    assert torch.allclose(no_text.aux["B"]["text"], T[("+", "text")])          # two sources: the sum
    assert torch.allclose(only_audio.aux["B"]["vision"], only_audio.aux["translated"][("audio", "vision")])
    assert torch.equal(full.aux["B"]["text"], model.encoder["text"](model.inputs(b)["text"]).chunk(2, dim=1)[0])
    assert torch.allclose(T[("audio", "text")], model.translator["la"](no_text.aux["B"]["audio"]))  # shared


def test_test_time_sampling_is_a_switch(tiny):
    b = make_batch(tiny.test, np.arange(8))
    for sample, same in ((False, True), (True, False)):
        torch.manual_seed(0)
        model = build("cyin", tiny.spec, **SMALL, sample_at_eval=sample).eval()
        with torch.no_grad():
            assert torch.equal(model(b).pred, model(b).pred) == same


@pytest.mark.parametrize("switch,check", [
    ("token_ib", lambda t: t["ib"] == 0), ("label_ib", lambda t: t["label"] == 0),
    ("back_translation", lambda t: t["translation"] > 0), ("cyclic_ib", lambda t: t["ib"] > 0)])
def test_ablation_switches(tiny, switch, check):
    torch.manual_seed(0)
    model = build("cyin", tiny.spec, **SMALL, **{switch: False})
    model.stage = 2
    b = make_batch(tiny.train, np.arange(8))
    terms = model.loss(b, model(b))
    assert check(terms)
    terms["total"].backward()


def test_every_pattern_and_missing_rate_gives_finite_predictions(tiny):
    torch.manual_seed(0)
    model = build("cyin", tiny.spec, **SMALL).eval()
    assert_finite_when_modalities_go_missing(model, tiny.test)
    assert len(robustness_sweep(model, tiny.test, tiny.spec, protocol="pattern")) == 7


def test_overfits_a_tiny_batch(tiny, fit_batch):
    torch.manual_seed(0)
    model = build("cyin", tiny.spec, **SMALL, attn_dropout_a=0.0, attn_dropout_l=0.0, attn_dropout_mem=0.0,
                  output_dropout=0.0)
    b = make_batch(tiny.train, np.arange(8))
    hist = fit_batch(model, b, steps=150, lr=3e-3)
    assert hist[-1]["task"] < 0.25 * hist[0]["task"]


def test_the_trainer_can_keep_the_last_epoch(tiny):
    torch.manual_seed(0)
    res = fit(build("tfn", tiny.spec), tiny, TrainConfig(epochs=3, batch_size=32, select_on="last"))
    assert res.best_epoch == 2
