"""Combining MMSA releases into one multi-domain dataset (msa_lib.data.harmonise)."""
from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
import pytest

from msa_lib.data import load, load_mmsa
from msa_lib.data.domains import holdout
from msa_lib.data.fixtures import write_mmsa_fixture
from msa_lib.data.harmonise import (DEFAULT_AUDIO_DIM, DEFAULT_VISION_DIM, harmonise, load_domains,
                                    standardise_frames)

SPLITS = ("train", "valid", "test")
SIZES = (8, 4, 5)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("releases")
    return {
        # MOSI shapes: text (50, 768), audio (375, 5), vision (500, 20), labels in [-3, 3]
        "mosi": write_mmsa_fixture(root / "mosi.pkl", "mosi_unaligned", sizes=SIZES, seed=1),
        # SIMS shapes: text (39, 768), audio (400, 33), vision (55, 709), labels in [-1, 1] + T/A/V
        "sims": write_mmsa_fixture(root / "sims.pkl", "sims", sizes=SIZES, seed=2),
        "sims2": write_mmsa_fixture(root / "sims2.pkl", "sims", sizes=(6, 3, 3), seed=3),
        "mosi2": write_mmsa_fixture(root / "mosi2.pkl", "mosi_aligned", sizes=(6, 3, 3), seed=4),
        "a": write_mmsa_fixture(root / "a.pkl", "mosi_unaligned", sizes=SIZES, seed=5),
        "b": write_mmsa_fixture(root / "b.pkl", "sims", sizes=SIZES, seed=6),
    }


@pytest.fixture(scope="module")
def sources(paths):
    return {"mosi": load_mmsa(paths["mosi"], name="mosi"), "sims": load_mmsa(paths["sims"], name="sims")}


def native(sources, **kw):
    """en+zh with the precomputed features (the warning is tested on its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return harmonise(sources, text="native", **kw)


@pytest.fixture(scope="module")
def combined(sources):
    return native(sources)


@pytest.fixture
def no_local_models(tmp_path, monkeypatch):
    """Nothing can be found: $MSA_BERT is an empty folder, the HF cache is empty, offline."""
    import huggingface_hub.constants as hf_constants

    (tmp_path / "bert").mkdir()
    (tmp_path / "hf").mkdir()
    monkeypatch.setenv("MSA_BERT", str(tmp_path / "bert"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


def test_common_widths_and_lengths(combined, sources):
    spec = combined.spec
    assert (DEFAULT_AUDIO_DIM, DEFAULT_VISION_DIM) == (74, 64)
    assert spec.dims == (768, 74, 64)
    assert spec.lengths == (50, 400, 500)             # the longest of the inputs per modality
    assert spec.name == "mosi+sims" and spec.n_domains == 2 and spec.label_range == (-1.0, 1.0)
    for s in SPLITS:
        sp = combined.split(s)
        n = sum(len(d.split(s)) for d in sources.values())
        assert sp.text.shape == (n, 50, 768) and sp.audio.shape == (n, 400, 74) and sp.vision.shape == (n, 500, 64)
        assert sp.text_ids.shape == (n, 50) and len(sp.raw_text) == n and len(sp.ids) == n
        for m in ("text", "audio", "vision"):
            orig = np.concatenate([getattr(d.split(s), f"{m}_lengths") for d in sources.values()])
            assert np.array_equal(getattr(sp, f"{m}_lengths"), orig)

    short = native(sources, audio_dim=8, vision_dim=16, lengths=(20, 100, None))
    assert short.spec.dims == (768, 8, 16) and short.spec.lengths == (20, 100, 500)
    tr = short.train
    assert tr.text.shape[1:] == (20, 768) and tr.audio.shape[1:] == (100, 8) and tr.vision.shape[1:] == (500, 16)
    orig = np.concatenate([d.train.audio_lengths for d in sources.values()])
    assert np.array_equal(tr.audio_lengths, np.minimum(orig, 100)) and (orig > 100).any()
    assert tr.text_lengths.max() <= 20 and tr.text_ids.shape == (len(tr), 20)


def test_per_frame_standardisation_and_zero_padding(combined, sources):
    mosi, sims = sources["mosi"].train, sources["sims"].train
    n_mosi = len(mosi)
    # one MOSI audio frame: standardised over its 5 channels, then 69 zero channels
    x = mosi.audio[1, 3].astype(np.float64)
    expected = (x - x.mean()) / x.std()
    got = combined.train.audio[1, 3]
    np.testing.assert_allclose(got[:5], expected, rtol=1e-5, atol=1e-5)
    assert np.all(got[5:] == 0) and abs(got[:5].mean()) < 1e-5 and abs(got[:5].std() - 1) < 1e-4
    # one SIMS vision frame: standardised over all 709 channels, then the first 64 kept
    x = sims.vision[2, 4].astype(np.float64)
    np.testing.assert_allclose(combined.train.vision[n_mosi + 2, 4], ((x - x.mean()) / x.std())[:64],
                               rtol=1e-5, atol=1e-5)
    # padding frames stay zero: past each sample's length, and the frames added to reach 400/500
    for sp in (combined.train, combined.test):
        for m in ("audio", "vision"):
            a, ln = getattr(sp, m), getattr(sp, f"{m}_lengths")
            pad = np.arange(a.shape[1])[None, :] >= ln[:, None]
            assert pad.any() and np.all(a[pad] == 0)
            assert np.all(np.abs(a[~pad]).sum(-1) > 0)   # every real frame carries something
    assert np.all(combined.train.vision[n_mosi:, 55:] == 0)   # SIMS has 55 vision frames
    # even when a file has junk after a sample's length, its padding frames come out zero
    junk = np.random.default_rng(0).normal(size=(3, 6, 4)).astype(np.float32)
    out = standardise_frames(junk, np.array([2, 6, 1]), width=5, length=8)
    assert out.shape == (3, 8, 5) and np.all(out[0, 2:] == 0) and np.all(out[2, 1:] == 0)
    assert np.all(out[:, :, 4] == 0) and np.all(out[1, 6:] == 0) and np.all(out[1, :6, :4] != 0)
    # the -inf that the loader cleaned stays finite
    assert np.isfinite(combined.train.audio).all()


def test_labels_on_common_scale_and_back(combined, sources):
    assert combined.config["domains"] == ["mosi", "sims"]
    assert combined.config["domain_scales"] == [3.0, 1.0]
    assert combined.config["domain_metric_sets"] == ["mosi", "sims"]
    assert combined.spec.score_scale == 1.0 and combined.spec.metric_set == "sims"   # mixed scales
    for s in SPLITS:
        sp = combined.split(s)
        assert np.abs(sp.label).max() <= 1.0
        for i, name in enumerate(combined.config["domains"]):
            back = sp.label[sp.domain == i] * combined.config["domain_scales"][i]
            np.testing.assert_allclose(back, sources[name].split(s).label, rtol=1e-6, atol=1e-6)
        assert sp.label_t is None      # MOSI has no unimodal labels
    np.testing.assert_allclose(combined.train.label[:SIZES[0]], sources["mosi"].train.label / 3, rtol=1e-6)


def test_same_scale_keeps_unimodal_labels_and_native_scoring(paths):
    zh = harmonise({"sims_a": load_mmsa(paths["sims"], name="sims"), "sims_b": load_mmsa(paths["sims2"], name="sims")})
    assert zh.config["text"] == "native" and zh.config["languages"] == ["zh", "zh"]   # auto: same language
    assert zh.spec.unimodal_labels and zh.train.label_t is not None
    assert zh.spec.score_scale == 1.0 and zh.spec.metric_set == "sims"
    en = harmonise({"mosi": load_mmsa(paths["mosi"]), "mosei": load_mmsa(paths["mosi2"])})
    assert en.config["domain_scales"] == [3.0, 3.0]
    assert en.spec.score_scale == 3.0 and en.spec.metric_set == "mosi"       # scores on [-3, 3]
    assert np.abs(en.train.label).max() <= 1.0 and en.train.label_t is None


def test_domain_ids_and_extras(combined, sources):
    for s in SPLITS:
        sp = combined.split(s)
        expected = np.repeat([0, 1], [len(sources["mosi"].split(s)), len(sources["sims"].split(s))])
        assert sp.domain.dtype == np.int64 and np.array_equal(sp.domain, expected)
        assert sp.ids[:len(sources["mosi"].split(s))] == sources["mosi"].split(s).ids
        assert list(sp.extra) == ["annotations"] and len(sp.extra["annotations"]) == len(sp)
    assert combined.config["dropped_extra"] == {}
    odd = dataclasses.replace(sources["sims"], train=dataclasses.replace(
        sources["sims"].train, extra={**sources["sims"].train.extra, "topic": np.zeros(SIZES[0])}))
    out = native({"mosi": sources["mosi"], "sims": odd})
    assert "topic" in out.config["dropped_extra"] and "mosi/train" in out.config["dropped_extra"]["topic"]
    assert "topic" not in out.train.extra


def test_auto_without_multilingual_encoder_is_a_clear_error(sources, no_local_models):
    with pytest.raises(ValueError) as err:
        harmonise(sources)                              # text="auto", English + Chinese
    msg = str(err.value)
    for part in ("mosi (en)", "sims (zh)", "bert-base-multilingual-cased", "MSA_BERT", "Hugging Face cache",
                 "text='native'"):
        assert part in msg


def test_native_with_two_languages_warns(sources):
    with pytest.warns(UserWarning, match="different languages"):
        out = harmonise(sources, text="native")
    assert out.config["text_harmonised"] is False and out.config["text"] == "native"
    assert out.config["languages"] == ["en", "zh"]
    np.testing.assert_array_equal(out.train.text[:SIZES[0]], sources["mosi"].train.text)
    np.testing.assert_array_equal(out.train.text[SIZES[0]:, :39], sources["sims"].train.text)
    assert np.all(out.train.text[SIZES[0]:, 39:] == 0)        # SIMS text padded from 39 to 50


def test_holdout_scores_target_on_native_scale(combined, sources):
    sims_out = holdout(combined, "sims")
    assert set(sims_out.test.domain.tolist()) == {1} and len(sims_out.test) == SIZES[2]
    assert sims_out.test.ids == sources["sims"].test.ids
    assert set(sims_out.train.domain.tolist()) == {0} and set(sims_out.valid.domain.tolist()) == {0}
    assert sims_out.spec.metric_set == "sims" and sims_out.spec.score_scale == 1.0
    mosi_out = holdout(combined, "mosi")
    assert set(mosi_out.test.domain.tolist()) == {0} and set(mosi_out.train.domain.tolist()) == {1}
    assert mosi_out.spec.metric_set == "mosi" and mosi_out.spec.score_scale == 3.0
    np.testing.assert_allclose(mosi_out.test.label * mosi_out.spec.score_scale, sources["mosi"].test.label,
                               rtol=1e-6, atol=1e-6)


def test_load_with_plus_joins_paths(paths):
    out = load(f"{paths['a']}+{paths['b']}")
    assert out.spec.name == "a+b" and out.config["domains"] == ["a", "b"] and out.spec.n_domains == 2
    assert out.config["languages"] == ["en", "en"]          # unknown names are taken as English
    assert out.config["domain_metric_sets"] == ["mosi", "sims"] and out.config["domain_scales"] == [3.0, 1.0]
    assert out.spec.dims == (768, 74, 64) and out.spec.lengths == (50, 400, 500)
    assert np.array_equal(out.test.domain, np.repeat([0, 1], SIZES[2]))
    # known file names: MOSI is English, SIMS Chinese
    with pytest.warns(UserWarning, match="different languages"):
        named = load_domains([str(paths["mosi"]), str(paths["sims"])], text="native")
    assert named.config["domains"] == ["mosi", "sims"] and named.config["languages"] == ["en", "zh"]


def test_clear_errors(paths, sources, no_local_models):
    with pytest.raises(ValueError, match="unknown dataset 'nosuchdata'"):
        load(f"{paths['mosi']}+nosuchdata")
    with pytest.raises(ValueError, match="empty dataset name"):
        load(f"{paths['mosi']}+")
    with pytest.raises(ValueError, match="'mosi' and 'MOSI' have the same name"):
        harmonise({"mosi": sources["mosi"], "MOSI": sources["mosi"]}, text="native")
    narrow = dataclasses.replace(sources["sims"], spec=dataclasses.replace(sources["sims"].spec,
                                                                           dims=(384, 33, 709)))
    with pytest.raises(ValueError, match="different widths -- mosi 768, sims 384"):
        harmonise({"mosi": sources["mosi"], "sims": narrow}, text="native")
    with pytest.raises(ValueError, match="'no-such-encoder'.*cannot load"):
        harmonise(sources, text="no-such-encoder")


def test_reencode_with_bundled_minilm(sources):
    from msa_lib.layers.text import load_pretrained

    out = harmonise(sources, text="minilm", lengths=(16, 50, 20))
    tok, _ = load_pretrained("minilm")
    assert out.config["text_harmonised"] is True and out.config["text"] == "minilm"
    assert out.spec.dims[0] == 384 and out.spec.has_text_ids and out.spec.unk_token_id == tok.unk_token_id
    for s in SPLITS:
        sp = out.split(s)
        assert sp.text.shape == (len(sp), 16, 384) and sp.text_ids.shape == (len(sp), 16)
        enc = tok(sp.raw_text, padding="max_length", truncation=True, max_length=16)
        assert np.array_equal(sp.text_ids, np.asarray(enc["input_ids"]))
        assert np.array_equal(sp.text_lengths, np.asarray(enc["attention_mask"]).sum(1))
        pad = np.arange(16)[None, :] >= sp.text_lengths[:, None]
        assert pad.any() and np.all(sp.text[pad] == 0) and np.all(np.abs(sp.text[~pad]).sum(-1) > 0)
        assert sp.unk_token_id == tok.unk_token_id


def test_auto_uses_the_multilingual_encoder_when_it_is_on_disk(sources, no_local_models):
    from msa_lib.data.harmonise import MULTILINGUAL_ENCODER
    from msa_lib.layers.text import write_random_bert

    # a tiny random BERT standing in for bert-base-multilingual-cased, found via $MSA_BERT/<name>/
    write_random_bert(os.path.join(os.environ["MSA_BERT"], MULTILINGUAL_ENCODER), hidden=32, layers=1, heads=2,
                      intermediate=64)
    out = harmonise(sources, lengths=(12, None, None))             # text="auto", en + zh
    assert out.config["text"] == MULTILINGUAL_ENCODER and out.config["text_harmonised"] is True
    assert out.spec.dims == (32, 74, 64) and out.train.text.shape[1:] == (12, 32)
    assert out.train.text_ids[:, 0].tolist() == [101] * len(out.train) and out.spec.unk_token_id == 100
