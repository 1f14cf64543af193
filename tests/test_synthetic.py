"""SynthMSA: format, determinism, and the premises the chapters rely on."""
import numpy as np
import pytest
import torch

from msa_lib.data import load
from msa_lib.data.mmsa import load_mmsa
from msa_lib.data.synthetic import DOMAINS, SIZES, generate, write_synth
from msa_lib.models import build
from msa_lib.train import TrainConfig, evaluate, fit, predict


def test_smoke_has_mmsa_format_and_content(synth_smoke):
    d = synth_smoke
    assert (len(d.train), len(d.valid), len(d.test)) == SIZES["smoke"]
    assert d.spec.dims == (384, 12, 20) and d.spec.metric_set == "mosi" and d.spec.unimodal_labels
    assert d.spec.n_domains == len(DOMAINS) and d.spec.unk_vector is not None
    tr = d.train
    assert tr.text.dtype == np.float32 and np.isfinite(tr.text).all()
    assert set(np.unique(tr.domain)) == set(range(len(DOMAINS)))
    # variable lengths, zero padding after the true length
    assert tr.audio_lengths.min() < tr.audio_lengths.max()
    i = int(np.argmin(tr.audio_lengths))
    assert np.all(tr.audio[i, tr.audio_lengths[i]:] == 0)
    # labels on a 0.2 grid with exact zeros; raw English sentences; BERT-vocabulary ids
    assert np.allclose(np.round(tr.label * 5), tr.label * 5, atol=1e-4)
    assert (np.abs(tr.label) <= 3).all() and (tr.label == 0).any()
    assert all(isinstance(t, str) and len(t.split()) >= 3 for t in tr.raw_text)
    assert (tr.text_ids[:, 0] == 101).all()   # [CLS]


def test_generation_is_deterministic_per_seed(tmp_path):
    a = generate("smoke", seed=3)
    b = generate("smoke", seed=3)
    c = generate("smoke", seed=4)
    for key in ("audio", "vision", "regression_labels", "text"):
        assert np.array_equal(a["train"][key], b["train"][key])
    assert a["train"]["raw_text"] == b["train"]["raw_text"]
    assert not np.array_equal(a["train"]["audio"], c["train"]["audio"])
    path = write_synth(tmp_path / "s.pkl", "smoke", 3)
    loaded = load_mmsa(path)
    assert np.array_equal(loaded.test.label, b["test"]["regression_labels"])


def test_sarcasm_contradicts_words(synth_smoke):
    """Some samples' words say the opposite of the true sentiment (readable only from A/V)."""
    tr = synth_smoke.train
    contradict = (tr.label_t > 1.0) & (tr.label < -0.9)
    assert 0.03 < contradict.mean() < 0.2


def test_unknown_size_is_rejected():
    with pytest.raises(ValueError, match="unknown SynthMSA size"):
        load("synth:huge")


# ---------------------------------------------------------------- premises (train small models)
@pytest.fixture(scope="module")
def demo():
    return load("synth:demo")


def _train(name, data, epochs=8, seed=0):
    torch.manual_seed(seed)
    model = build(name, data.spec, d_model=32)
    fit(model, data, TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, seed=seed))
    return model


@pytest.mark.slow
def test_premise_text_strong_av_weaker_multimodal_best(demo):
    scores = {n: evaluate(_train(n, demo), demo.test, demo.spec)
              for n in ("text_only", "audio_only", "vision_only", "early_fusion")}
    acc = {n: s["Has0_acc_2"] for n, s in scores.items()}
    assert acc["text_only"] > 0.72                                        # language is good...
    assert acc["text_only"] > acc["audio_only"] + 0.05
    assert acc["text_only"] > acc["vision_only"] + 0.05                   # ...and beats A or V alone
    assert scores["early_fusion"]["MAE"] < scores["text_only"]["MAE"] - 0.05   # multimodal is better
    assert scores["early_fusion"]["Corr"] > scores["text_only"]["Corr"] + 0.05


@pytest.mark.slow
def test_premise_held_out_domain_is_harder(demo):
    held = 3
    source = type(demo)(spec=demo.spec, path=demo.path, config=demo.config,
                        train=demo.train.subset(demo.train.domain != held),
                        valid=demo.valid.subset(demo.valid.domain != held),
                        test=demo.test.subset(demo.test.domain != held))
    target = demo.test.subset(demo.test.domain == held)
    seen = evaluate(_train("early_fusion", demo), target, demo.spec)
    unseen = evaluate(_train("early_fusion", source), target, demo.spec)
    assert unseen["MAE"] > seen["MAE"] + 0.1
