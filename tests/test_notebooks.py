"""Chapter structure shared by the smoke runs: tests/test_solutions.py runs every chapter with its
solutions on SynthMSA; tests/test_student.py runs every student notebook on a real-shape MMSA fixture."""
from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def test_each_chapter_has_one_parameters_cell():
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} parameters cells"
        assert 'PROFILE = "demo"' in tagged[0].source and "DATASET" in tagged[0].source
