"""Paper presets run BERT on the token ids, with removed words as [UNK] before the encoder.

A tiny randomly initialised BERT written by the test (conftest.tiny_bert_root) stands in
for bert-base-uncased / bert-base-chinese: nothing is downloaded.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_lib.data import load
from msa_lib.data.batch import make_batch
from msa_lib.data.fixtures import write_mmsa_fixture
from msa_lib.missing import random_missing
from msa_lib.models import build

FIXTURES = {"mosi": "mosi_unaligned", "sims": "sims"}


@pytest.fixture(scope="module")
def real_shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert_fixtures")
    return {p: load(str(write_mmsa_fixture(root / f"{k}.pkl", k, sizes=(8, 4, 4)))) for p, k in FIXTURES.items()}


@pytest.fixture
def with_bert(monkeypatch, tiny_bert_root):
    monkeypatch.setenv("MSA_BERT", str(tiny_bert_root))
    return tiny_bert_root


@pytest.mark.parametrize("model_name", ["lnln", "dashfusion", "hme", "cyin"])
def test_without_bert_the_error_says_how_to_provide_it(model_name, real_shapes, monkeypatch, tmp_path):
    monkeypatch.delenv("MSA_BERT", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    with pytest.raises(OSError) as err:
        build(model_name, real_shapes["mosi"].spec, preset="mosi")
    text = str(err.value)
    assert "bert-base-uncased" in text and "MSA_BERT" in text and "text_encoder='features'" in text
    assert "leaks" in text


@pytest.mark.parametrize("model_name,preset", [(m, p) for m in ("lnln", "dashfusion") for p in ("mosi", "sims")]
                         + [("hme", "mosi"), ("cyin", "mosi")])                 # HME and CyIN have no SIMS configuration
def test_paper_presets_fine_tune_bert_on_token_ids(model_name, preset, real_shapes, with_bert):
    data = real_shapes[preset]
    torch.manual_seed(0)
    model = build(model_name, data.spec, preset=preset)
    bert = next(m for m in model.modules() if type(m).__name__ == "BertModel")
    assert all(p.requires_grad for p in bert.parameters())                     # fine-tuned, not frozen
    model.on_epoch_start(0, data.train, "cpu", seed=0)
    model.train()
    batch = model.train_batch(make_batch(data.train, np.arange(4)), epoch=0, seed=0)
    terms = model.loss(batch, model(batch))
    terms["total"].backward()
    grads = [p.grad for p in bert.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0              # the loss reaches BERT
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(make_batch(data.test, np.arange(4))).pred).all()


@pytest.mark.parametrize("model_name", ["lnln", "dashfusion", "hme", "cyin"])
def test_removed_words_reach_bert_as_the_unk_id(model_name, real_shapes, with_bert):
    data = real_shapes["mosi"]
    model = build(model_name, data.spec, preset="mosi").eval()
    bert = next(m for m in model.modules() if type(m).__name__ == "BertModel")
    seen = []
    bert.embeddings.word_embeddings.register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    clean = make_batch(data.test, np.arange(4))
    damaged = random_missing(clean, 0.6, seed=3)
    with torch.no_grad():
        model(damaged)
    ids = seen[-1]
    n = ids.shape[1]                       # DashFusion may cut trailing padding; positions line up from 0
    removed = (damaged.text_mask & ~damaged.text_avail)[:, :n]
    kept = damaged.text_avail[:, :n]
    assert removed.any() and data.spec.unk_token_id == 100
    assert (ids[removed] == data.spec.unk_token_id).all()
    assert (ids[kept] == clean.text_ids[:, :n][kept]).all()
    assert not (ids[kept] == data.spec.unk_token_id).any()


def test_a_tokenizer_with_another_unk_id_is_refused(real_shapes, with_bert):
    import dataclasses
    spec = dataclasses.replace(real_shapes["mosi"].spec, unk_token_id=1)
    with pytest.raises(ValueError, match=r"\[UNK\] id is 100, the dataset's is 1"):
        build("lnln", spec, preset="mosi")


def test_the_unk_id_comes_from_the_data(real_shapes):
    """The protocols write the spec's id, carried by the split, never a constant."""
    split = real_shapes["mosi"].train
    split.unk_token_id = 7
    try:
        damaged = random_missing(make_batch(split, np.arange(4)), 0.6, seed=3)
    finally:
        split.unk_token_id = 100
    removed = damaged.text_mask & ~damaged.text_avail
    assert removed.any() and (damaged.text_ids[removed] == 7).all()
    no_id = make_batch(split, np.arange(4)).replace(unk_token_id=None)
    with pytest.raises(ValueError, match="unk_token_id"):
        random_missing(no_id, 0.6)


@pytest.mark.parametrize("model_name", ["lnln", "dashfusion", "hme", "cyin"])
def test_precomputed_features_remain_the_explicit_fallback(model_name, real_shapes, monkeypatch):
    monkeypatch.delenv("MSA_BERT", raising=False)
    model = build(model_name, real_shapes["mosi"].spec, preset="mosi", text_encoder="features")
    assert not any(type(m).__name__ == "BertModel" for m in model.modules())
