"""MMSLF: modulated attention, teacher and student, the two stages, prompts end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from msa_lib.data.batch import make_batch
from msa_lib.data.spec import DatasetSpec
from msa_lib.models import build
from msa_lib.models.mmslf import MMSLFConfig, modulated_attention
from msa_lib.train import TrainConfig, fit_stages

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(preset="synth", d_model=16, dim_head=8, mlp_dim=16, fusion_mlp=16, prompt_mlp=16, prompt_positions=64,
             prompt_max_length=16)


@pytest.mark.parametrize("name, dims, lengths, teacher, student_12, student_22", [
    ("mosi", (768, 5, 20), (50, 375, 500), 1_445_057, 409_473, 525_953),
    ("mosei", (768, 74, 35), (50, 500, 500), 1_466_433, 480_065, 596_545),
    ("sims", (768, 33, 709), (50, 400, 55), 2_542_465, 533_953, 815_553)])
def test_parameter_counts_are_the_official_ones(name, dims, lengths, teacher, student_12, student_22):
    """Without the BERTs, as counted in the spec (section 12) from the official modules."""
    spec = DatasetSpec(name, dims, lengths)
    for depths, expected in (((1, 2), student_12), ((2, 2), student_22)):
        m = build("mmslf", spec, preset=name, text_encoder="features", prompt_encoder="bert",
                  encoder_depth=depths[0], fusion_depth=depths[1])
        assert sum(p.numel() for p in m.student.parameters()) == expected
    assert sum(p.numel() for p in m.teacher.parameters()) == teacher


def test_a_constant_prompt_value_product_is_a_temperature():
    """When every prompt key and every value vector are the same, P_k V^T is one number c, and the
    modulated map is softmax(c * Q K^T / sqrt(dh))."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 5, 8, generator=g), torch.randn(2, 3, 7, 8, generator=g)
    v = torch.randn(1, 1, 1, 8, generator=g).expand(2, 3, 7, 8)
    pk = torch.randn(1, 1, 1, 8, generator=g).expand(2, 3, 5, 8)
    out, plain, modulated = modulated_attention(q, k, v, pk)
    c = float((pk[0, 0, 0] @ v[0, 0, 0]) * 8 ** -0.5)
    logits = q @ k.transpose(-2, -1) * 8 ** -0.5
    assert torch.allclose(modulated, (c * logits).softmax(-1), atol=1e-6)
    assert torch.allclose(plain, logits.softmax(-1), atol=1e-6)
    assert not torch.allclose(modulated, plain, atol=1e-3)
    _, plain2, none = modulated_attention(q, k, v, None)
    assert none is None and torch.equal(plain2, plain)


@pytest.fixture(scope="module")
def prepared(synth_smoke, tmp_path_factory):
    torch.manual_seed(0)
    model = build("mmslf", synth_smoke.spec, **SMALL)
    model.prepare(synth_smoke, cache_dir=tmp_path_factory.mktemp("prompts"))
    return model


def test_teacher_and_student_shapes(prepared, synth_smoke):
    b = make_batch(synth_smoke.train, np.arange(6))
    Lt, La, Lv = synth_smoke.spec.lengths
    prepared.set_stage("teacher")
    out = prepared(b)
    net = out.aux["net"]
    assert out.pred.shape == (6,) and net["h_reg"].shape == (6, 4, 16)
    assert net["attn_la"][-1].shape == (6, 4, Lt, La) and net["mod_lv"][-1].shape == (6, 4, Lt, Lv)
    prepared.set_stage("student")
    prepared.eval()
    out = prepared(b)
    assert out.pred.shape == (6,) and out.aux["net"]["mod_la"] is None and "teacher" not in out.aux
    prepared.train()
    out = prepared(b)
    assert "teacher" in out.aux and set(prepared.loss(b, out)) == {"task", "attn", "fusion", "total"}


def test_the_student_needs_no_prompts(synth_smoke):
    model = build("mmslf", synth_smoke.spec, **SMALL).eval()          # no prepare, no prompts
    with torch.no_grad():
        assert torch.isfinite(model(make_batch(synth_smoke.test, np.arange(5))).pred).all()
    model.set_stage("teacher")
    with pytest.raises(KeyError, match="no prompt for clip"):
        model(make_batch(synth_smoke.test, np.arange(5)))


def test_stages_train_one_network_each_and_distillation_lowers_the_map_gap(synth_smoke, tmp_path):
    from msa_lib.train import fit
    torch.manual_seed(0)
    model = build("mmslf", synth_smoke.spec, **SMALL, w_attn=200.0)
    model.prepare(synth_smoke, cache_dir=tmp_path)
    cfg = TrainConfig(epochs=4, batch_size=32, lr=3e-3, select_on="last", schedule="constant", warmup=0.0)
    student0 = {k: v.clone() for k, v in model.student.state_dict().items()}
    model.set_stage("teacher")
    fit(model, synth_smoke, cfg)
    assert all(torch.equal(student0[k], v) for k, v in model.student.state_dict().items())   # teacher stage: student untouched
    teacher1 = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    model.set_stage("student")
    hist = fit(model, synth_smoke, cfg).history
    assert all(torch.equal(teacher1[k], v) for k, v in model.teacher.state_dict().items())   # student stage: teacher frozen
    assert any(not torch.equal(student0[k], v) for k, v in model.student.state_dict().items())
    assert hist["train_attn"].iloc[-1] < 0.8 * hist["train_attn"].iloc[0]     # the student's maps move to the teacher's


def test_fit_stages_runs_the_stages_in_order(synth_smoke, tmp_path):
    torch.manual_seed(0)
    model = build("mmslf", synth_smoke.spec, **SMALL)
    model.prepare(synth_smoke, cache_dir=tmp_path)
    results = fit_stages(model, synth_smoke, TrainConfig(epochs=1, batch_size=64), checkpoint_dir=tmp_path / "run")
    assert list(results) == ["teacher", "student"] and model.stage == "student"
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "teacher" / "best.pt").exists()
    single = fit_stages(build("early_fusion", synth_smoke.spec, d_model=8), synth_smoke, TrainConfig(epochs=1))
    assert list(single) == [None]


def test_prompts_are_written_once_and_reused(synth_smoke, tmp_path, monkeypatch):
    from msa_lib import prompts
    calls = []
    original = prompts.Describer.__call__
    monkeypatch.setattr(prompts.Describer, "__call__", lambda self, clip: (calls.append(1), original(self, clip))[1])
    model = build("mmslf", synth_smoke.spec, **SMALL)
    model.prepare(synth_smoke, cache_dir=tmp_path)
    n = len(synth_smoke.train.label) + len(synth_smoke.valid.label) + len(synth_smoke.test.label)
    assert len(calls) == n
    csvs = list(tmp_path.glob("*.csv"))
    assert len(csvs) == 1 and "describer-v2-e0-s0-leak" in csvs[0].name
    assert model.prompt_cache_path(synth_smoke, tmp_path) == csvs[0]          # where the chapter reads them back
    build("mmslf", synth_smoke.spec, **SMALL).prepare(synth_smoke, cache_dir=tmp_path)
    assert len(calls) == n                                                     # the second run asked nothing
    assert len(list(tmp_path.glob("prompt-features-*.npy"))) == 1


def test_config_checks():
    with pytest.raises(ValueError, match="distill_target"):
        build("mmslf", DatasetSpec("x", (8, 4, 4), (6, 6, 6)), distill_target="soft")
    with pytest.raises(ValueError, match="stage"):
        MMSLFConfig().stage_config("both")
    t, s = MMSLFConfig.preset("mosi").stage_config("teacher"), MMSLFConfig.preset("mosi").stage_config("student")
    assert (t.epochs, t.lr, s.epochs, s.lr, t.select_on) == (100, 2e-4, 200, 1e-4, "MAE")


def test_cli_trains_teacher_then_student(tmp_path):
    from msa_lib.cli import main
    out = tmp_path / "run"
    assert main(["train", "--model", "mmslf", "--preset", "synth", "--data", "synth:smoke", "--epochs", "1",
                 "--quiet", "--set", "d_model=16", "--set", "dim_head=8", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["stages"]) == {"teacher", "student"}
    assert (out / "best.pt").exists() and (out / "teacher" / "best.pt").exists()


def test_prompt_features_match_one_by_one_encoding(tmp_path):
    from msa_lib.layers.text import load_pretrained
    from msa_lib.models.mmslf import encode_prompts
    texts = ["1. Visual cues: a smile.", "x " * 80, "", "2. Language cues: \"great\" is positive; not bad at all."]
    feats = encode_prompts(texts, "minilm", max_length=24, cache_dir=tmp_path)
    assert feats.shape == (4, 24, 384) and feats.dtype == torch.float16
    tokenizer, model = load_pretrained("minilm")
    for i, t in enumerate(texts):
        tok = tokenizer([t], truncation=True, max_length=24, return_tensors="pt")
        with torch.no_grad():
            ref = model(**tok).last_hidden_state[0]
        n = ref.shape[0]
        assert torch.allclose(feats[i, :n].float(), ref, atol=2e-2) and not feats[i, n:].any()
    assert torch.equal(encode_prompts(texts, "minilm", max_length=24, cache_dir=tmp_path), feats)   # from the cache


def test_the_teacher_augmentation_drops_tokens_and_elements(synth_smoke):
    model = build("mmslf", synth_smoke.spec, **SMALL)
    b = make_batch(synth_smoke.train, np.arange(64))
    assert model.train_batch(b, 0, 0) is b                                     # the student: clean inputs
    model.set_stage("teacher")
    a = model.train_batch(b, 0, 0)
    unk = torch.as_tensor(synth_smoke.spec.unk_vector, dtype=b.text.dtype)
    dropped_tokens = (a.text == unk).all(-1) & ~(b.text == unk).all(-1)
    share = float(dropped_tokens.float().mean())
    assert 0.1 <= share <= 0.4 and (a.text_ids[dropped_tokens] == b.unk_token_id).all()    # E[1 - s] = 0.25
    zeroed = (a.audio == 0) & (b.audio != 0)
    assert 0.1 <= float(zeroed.sum() / (b.audio != 0).sum()) <= 0.4
    assert zeroed.any(-1).float().mean() > zeroed.all(-1).float().mean()      # elements, not whole frames
    assert torch.equal(model.train_batch(b, 0, 0).audio, a.audio)              # deterministic for (seed, epoch, batch)
