"""Every chapter runs on the smoke profile, on SynthMSA and on a real-shape MMSA fixture."""
from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from claims_ranges import check

from msa_lib import numerics
from msa_lib.data.fixtures import write_mmsa_fixture
from msa_lib.profiles import load_claims

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="session")
def mosi_fixture(tmp_path_factory):
    """Unaligned-MOSI shapes (768-d text, 375 x 5 audio, 500 x 20 vision)."""
    return write_mmsa_fixture(tmp_path_factory.mktemp("fixture") / "mosi_unaligned_fixture.pkl",
                              "mosi_unaligned", sizes=(48, 16, 16))


def test_each_chapter_has_one_parameters_cell():
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} parameters cells"
        assert 'PROFILE = "demo"' in tagged[0].source and "DATASET" in tagged[0].source


@pytest.mark.parametrize("data", ["synth", "fixture"])
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_on_smoke(path, data, tmp_path, monkeypatch, mosi_fixture):
    import papermill as pm

    monkeypatch.setenv("MSA_PROFILE", "smoke")
    monkeypatch.setenv("MSA_CLAIMS_DIR", str(tmp_path / "claims"))
    dataset = "synth" if data == "synth" else str(mosi_fixture)
    start = time.time()
    out = pm.execute_notebook(str(path), str(tmp_path / path.name), parameters={"DATASET": dataset},
                              cwd=str(path.parent), progress_bar=False)   # the kernel its metadata names
    assert out.metadata.kernelspec.name == numerics.KERNEL_NAME
    seconds = time.time() - start
    errors = [o for c in out.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    first_output = next("".join(o.get("text", "") for o in c.outputs) for c in out.cells if c.get("outputs"))
    assert ("numerics: pinned" if numerics.mode() == "pinned" else "numerics: machine defaults") in first_output
    claims = load_claims(path.stem, "smoke", tmp_path / "claims")
    if data == "synth":   # a fixture has random features: it only has to run
        assert check(path.stem, "smoke", claims) == []
    print(f"{path.stem} smoke on {data}: {seconds:.1f} s")
