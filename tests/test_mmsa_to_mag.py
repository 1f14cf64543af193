"""data_scripts/mmsa_to_mag.py: MMSA pickles to the MAG tuple format HME's official loader reads."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import load_script

from msa_lib.data.fixtures import make_mmsa_fixture, write_mmsa_fixture
from msa_lib.data.mmsa import MMSAFormatError



@pytest.fixture(scope="module")
def tool():
    return load_script("mmsa_to_mag")


def test_converts_every_split_to_mag_tuples(tmp_path, tool):
    src = write_mmsa_fixture(tmp_path / "aligned_50.pkl", "mosi_aligned", sizes=(6, 3, 4))
    assert tool.main([str(src), str(tmp_path / "mag.pkl")]) == 0
    with open(tmp_path / "mag.pkl", "rb") as fh:
        mag = pickle.load(fh)
    raw = make_mmsa_fixture("mosi_aligned", sizes=(6, 3, 4))
    assert {k: len(v) for k, v in mag.items()} == {"train": 6, "dev": 3, "test": 4}
    (words, visual, acoustic), label, segment = mag["dev"][2]
    assert words == raw["valid"]["raw_text"][2].split()
    assert np.array_equal(visual, raw["valid"]["vision"][2]) and np.array_equal(acoustic, raw["valid"]["audio"][2])
    assert visual.shape == (50, 20) and acoustic.shape == (50, 5)
    assert label == pytest.approx(float(raw["valid"]["regression_labels"][2])) and segment == raw["valid"]["id"][2]


def test_bad_input_names_what_is_missing_and_writes_nothing(tmp_path, tool, capsys):
    raw = make_mmsa_fixture("mosi_aligned", sizes=(4, 2, 2))
    del raw["valid"]["vision"]
    with pytest.raises(MMSAFormatError, match=r"split 'valid': missing field\(s\) \['vision'\]"):
        tool.convert(raw)
    del raw["test"]
    with pytest.raises(MMSAFormatError, match="no split 'test'"):
        tool.convert(raw)
    bad = tmp_path / "broken.pkl"
    bad.write_bytes(b"not a pickle")
    assert tool.main([str(bad), str(tmp_path / "out.pkl")]) == 1
    assert "error:" in capsys.readouterr().err and not (tmp_path / "out.pkl").exists()
    assert tool.main([str(tmp_path / "absent.pkl"), str(tmp_path / "out.pkl")]) == 2
