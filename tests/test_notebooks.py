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


def test_chapters_cross_reference_and_caption_their_figures():
    """Each chapter links another chapter ({doc}), a glossary term ({term}), a labelled equation
    ({eq}) and a numbered figure ({numref}); every figure has a caption or alt text."""
    import re
    labels_eq, names_fig = {}, {}
    nbs = {p.stem: nbformat.read(p, as_version=4) for p in CHAPTERS}
    for stem, nb in nbs.items():
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        labels_eq[stem] = set(re.findall(r"\$\$ \((eq-[\w-]+)\)", text))
        names_fig[stem] = {c.metadata["mystnb"]["figure"]["name"] for c in nb.cells
                           if "figure" in c.metadata.get("mystnb", {})}
    all_eq, all_fig = set().union(*labels_eq.values()), set().union(*names_fig.values())
    for stem, nb in nbs.items():
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        for role in ("doc", "term", "eq", "numref"):
            assert f"{{{role}}}`" in text, f"{stem}: no {{{role}}} reference"
        assert set(re.findall(r"\{eq\}`([\w-]+)`", text)) <= all_eq
        assert set(re.findall(r"\{numref\}`([\w-]+)`", text)) <= all_fig
        for i, c in enumerate(nb.cells):
            if c.cell_type == "code" and any("image/png" in o.get("data", {}) for o in c.get("outputs", [])):
                mystnb = c.metadata.get("mystnb", {})
                assert mystnb.get("figure", {}).get("caption") or mystnb.get("image", {}).get("alt"), \
                    f"{stem} cell {i}: a figure without caption or alt text"


def test_first_code_cell_installs_msa_lib_on_colab_from_the_configured_repository():
    """The Colab launch (when the book's repository is public) opens a notebook that installs
    msa_lib from the one repository address in _config.yml."""
    import yaml
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    for path in CHAPTERS:
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert "colab" in first.metadata.get("tags", []), path.name
        assert f'git+{url}"' in first.source and 'if "google.colab" in sys.modules' in first.source
