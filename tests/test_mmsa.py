"""The MMSA loader: real shapes, cleaning, safety, and one clear error per malformed input."""
from __future__ import annotations

import copy
import os
import pickle

import numpy as np
import pytest

from msa_lib.data import load, load_mmsa
from msa_lib.data.fixtures import REAL_SHAPES, make_mmsa_fixture, write_mmsa_fixture
from msa_lib.data.mmsa import KNOWN_SHA256, MMSAFormatError, resolve_dataset_path, write_pickle_atomic


@pytest.fixture(scope="module")
def mosi_dict():
    return make_mmsa_fixture("mosi_unaligned", sizes=(10, 4, 4))


def _write(tmp_path, obj, name="data.pkl"):
    path = tmp_path / name
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return path


@pytest.mark.parametrize("kind", sorted(REAL_SHAPES))
def test_fixtures_with_real_shapes_load(tmp_path, kind):
    lt, dt, (la, da), (lv, dv), bound, unimodal, aligned = REAL_SHAPES[kind]
    path = write_mmsa_fixture(tmp_path / f"{kind}.pkl", kind, sizes=(8, 3, 3))
    d = load_mmsa(path)
    assert d.spec.dims == (dt, da, dv) and d.spec.lengths == (lt, la, lv)
    assert d.spec.metric_set == ("sims" if bound == 1.0 else "mosi")
    assert d.spec.label_range == (-bound, bound) and d.spec.unimodal_labels == unimodal
    tr = d.train
    assert tr.text.dtype == np.float32 and tr.audio.dtype == np.float32 and len(tr) == 8
    assert np.isfinite(tr.audio).all() and d.cleaned["train/audio"] == 1     # the planted -inf
    raw = make_mmsa_fixture(kind, sizes=(8, 3, 3))["train"]
    assert np.array_equal(tr.text_lengths, raw["text_bert"][:, 1].sum(1))
    assert np.array_equal(tr.text_ids[:, 0], np.full(8, 101))
    if aligned:   # no stored lengths: frames follow the words
        assert np.array_equal(tr.audio_lengths, tr.text_lengths)
    else:
        assert np.array_equal(tr.vision_lengths, raw["vision_lengths"])
    assert (tr.label_t is not None) == unimodal
    assert list(tr.extra) == ["annotations"] and tr.ids[0].startswith("fixture0_train")


def test_lengths_fall_back_to_last_nonzero_frame(tmp_path, mosi_dict):
    d = copy.deepcopy(mosi_dict)
    for s in ("train", "valid", "test"):
        d[s].pop("audio_lengths")
    loaded = load_mmsa(_write(tmp_path, d))
    expected = mosi_dict["train"]["audio_lengths"]
    # a sample whose last real frame happens to be all-zero would be shorter; none here
    assert np.array_equal(loaded.train.audio_lengths, expected)


def test_truncated_file_is_one_clear_error(tmp_path):
    path = write_mmsa_fixture(tmp_path / "full.pkl", sizes=(6, 2, 2))
    blob = path.read_bytes()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(MMSAFormatError, match=r"cut\.pkl.*(truncated|corrupt)"):
        load_mmsa(cut)


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, mosi_dict):
    marker = tmp_path / "pwned"
    d = copy.deepcopy(mosi_dict)
    d["train"]["raw_text"] = _Exploit(marker)
    path = _write(tmp_path, d, "evil.pkl")
    with pytest.raises(MMSAFormatError, match=r"evil\.pkl: refused to load (posix|os)\.system.*nothing was executed"):
        load_mmsa(path)
    assert not marker.exists()


def _broken(mosi_dict, edit):
    d = copy.deepcopy(mosi_dict)
    edit(d)
    return d


@pytest.mark.parametrize("edit,pattern", [
    (lambda d: d.pop("valid"), r"split 'valid' is missing"),
    (lambda d: d["test"].pop("audio"), r"split 'test', key 'audio': missing"),
    (lambda d: d["train"].__setitem__("vision", d["train"]["vision"][:, :, 0]),
     r"split 'train', key 'vision': expected a 3-d array \(N, L, D\), got shape \(10, 500\)"),
    (lambda d: d["train"].__setitem__("audio", d["train"]["audio"][:7]),
     r"split 'train', key 'audio': has 7 samples but the split's other keys have 10"),
    (lambda d: d["valid"]["regression_labels"].__setitem__(2, 4.5),
     r"split 'valid', key 'regression_labels': label 4.5 at sample 2 is outside the range \[-3, 3\]"),
    (lambda d: d["test"]["regression_labels"].__setitem__(1, np.nan),
     r"split 'test', key 'regression_labels': 1 non-finite label"),
    (lambda d: d["valid"].__setitem__("audio", np.zeros((4, 375, 6))),
     r"split 'valid', key 'audio': shape \(N, 375, 6\) differs from train's \(N, 375, 5\)"),
    (lambda d: d["train"].__setitem__("text_bert", d["train"]["text_bert"][:, :2]),
     r"split 'train', key 'text_bert': expected shape \(N, 3, 50\)"),
    (lambda d: d.__setitem__("train", [1, 2, 3]), r"split 'train': expected a dict of arrays, got list"),
])
def test_malformed_inputs_name_file_split_and_key(tmp_path, mosi_dict, edit, pattern):
    path = _write(tmp_path, _broken(mosi_dict, edit), "bad.pkl")
    with pytest.raises(MMSAFormatError, match=r"bad\.pkl: " + pattern):
        load_mmsa(path)


def test_nan_and_inf_features_are_cleaned(tmp_path, mosi_dict):
    d = copy.deepcopy(mosi_dict)
    d["train"]["vision"][3, 2, :4] = np.nan
    d["train"]["text"][0, 1, 0] = -np.inf
    loaded = load_mmsa(_write(tmp_path, d))
    assert loaded.cleaned["train/vision"] == 4 and loaded.cleaned["train/text"] == 1
    assert loaded.train.vision[3, 2, :4].tolist() == [0.0] * 4 and np.isfinite(loaded.train.text).all()


def test_known_release_checked_against_published_sha256(tmp_path, mosi_dict):
    path = tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl"
    path.parent.mkdir(parents=True)
    _write(path.parent, mosi_dict, path.name)
    assert "MOSI/Processed/unaligned_50.pkl" in KNOWN_SHA256
    with pytest.raises(MMSAFormatError, match="does not match the published hash of MOSI/Processed/unaligned_50.pkl"):
        load_mmsa(path)
    assert load_mmsa(path, verify=False).spec.name == "mosi"


def test_missing_file_and_unknown_names(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nope.pkl: no such file"):
        load_mmsa(tmp_path / "nope.pkl")
    with pytest.raises(ValueError, match="unknown dataset 'iemocap'"):
        resolve_dataset_path("iemocap")
    monkeypatch.setenv("MSA_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="prepare_real.py"):
        load("mosi")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "x.pkl"
    write_pickle_atomic({"a": 1}, path)
    with pytest.raises(Exception):
        write_pickle_atomic({"a": lambda: 0}, path)        # lambdas cannot be pickled
    assert pickle.loads(path.read_bytes()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.pkl"]   # no temp file left behind
