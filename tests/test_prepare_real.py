"""data_scripts/prepare_real.py: verify, refuse mismatches, place files atomically."""
from __future__ import annotations


import pytest
from conftest import load_script

from msa_lib.data import load
from msa_lib.data.fixtures import write_mmsa_fixture



@pytest.fixture(scope="module")
def prepare():
    return load_script("prepare_real")


def test_hash_mismatch_is_refused_and_nothing_placed(tmp_path, prepare, capsys):
    src = tmp_path / "download"
    write_mmsa_fixture(src / "MOSI" / "Processed" / "unaligned_50.pkl", sizes=(6, 2, 2))
    dest = tmp_path / "data"
    assert prepare.main(["--src", str(src), "--dest", str(dest)]) == 1
    assert "SHA-256 mismatch" in capsys.readouterr().out
    assert not (dest / "MOSI").exists()


def test_no_verify_places_a_loadable_link(tmp_path, prepare, monkeypatch):
    src = tmp_path / "download"
    write_mmsa_fixture(src / "MOSI" / "Processed" / "unaligned_50.pkl", sizes=(6, 2, 2))
    write_mmsa_fixture(tmp_path / "elsewhere.pkl", "sims", sizes=(6, 2, 2))
    dest = tmp_path / "data"
    assert prepare.main(["--src", str(src), "--file", f"simsv2={tmp_path / 'elsewhere.pkl'}",
                         "--dest", str(dest), "--no-verify"]) == 0
    assert (dest / "MOSI/Processed/unaligned_50.pkl").is_symlink()
    monkeypatch.setenv("MSA_DATA", str(dest))
    assert load("simsv2").spec.metric_set == "sims"
    assert load("mosi", verify=False).spec.lengths == (50, 375, 500)
    assert prepare.main(["--check", "--dest", str(dest), "--no-verify"]) == 0


def test_bad_arguments_are_one_line_errors(tmp_path, prepare, capsys):
    with pytest.raises(SystemExit):
        prepare.main(["--file", "imdb=/nope"])
    assert "NAME=PATH with NAME in" in capsys.readouterr().err
