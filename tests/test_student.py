"""The student edition (`make student`, msa_lib/student.py): no solution survives in its
notebooks or its HTML, every exercise label does, and every student notebook runs on the
smoke profile (on the real-shape MOSI fixture: the teacher's chapters run on SynthMSA in
tests/test_solutions.py)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest

from msa_lib import numerics
from msa_lib.data.fixtures import write_mmsa_fixture
from msa_lib.exercises import MIME, exercises
from msa_lib.student import ANSWER_TAG, SOLUTION_TAG, build_html, exercise_labels, tags, write_edition

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
VENDOR = ROOT / "_build" / "vendor"


def solution_snippets(nb) -> list[str]:
    """Distinctive lines of every solution cell (long enough not to occur elsewhere by chance)."""
    lines = {line.strip() for c in nb.cells if SOLUTION_TAG in tags(c) for line in c.source.splitlines()}
    teaching = {line.strip() for c in nb.cells if SOLUTION_TAG not in tags(c) for line in c.source.splitlines()}
    return sorted(line for line in lines - teaching if len(line) >= 40 and "solution-" not in line)


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    return write_edition(tmp_path_factory.mktemp("student") / "edition")


def test_student_notebooks_keep_exercises_and_drop_solutions(edition):
    keyed = set(exercises())
    for path in CHAPTERS:
        teacher, student = nbformat.read(path, as_version=4), nbformat.read(edition / "chapters" / path.name, 4)
        text = nbformat.writes(student)
        assert not [c for c in student.cells if SOLUTION_TAG in tags(c)]
        assert "{solution-start}" not in text and "{solution-end}" not in text
        snippets = solution_snippets(teacher)
        assert snippets, f"{path.name}: no solution text to look for"
        assert [s for s in snippets if s in text] == []
        assert exercise_labels(student) == exercise_labels(teacher)
        answers = [c for c in student.cells if ANSWER_TAG in tags(c)]
        assert sorted(re.search(r"check\('([\w-]+)'", c.source).group(1) for c in answers) == \
            sorted(set(exercise_labels(teacher)) & keyed)
        # the teaching cells keep their executed outputs
        n_out = lambda nb: sum(len(c.get("outputs", [])) for c in nb.cells if SOLUTION_TAG not in tags(c))  # noqa
        assert n_out(student) == n_out(teacher) > 0
    config = (edition / "_config.yml").read_text()
    assert "hide_solutions: true" in config and "(student edition)" in config


def test_edition_is_never_written_over_the_sources():
    with pytest.raises(ValueError, match="refusing"):
        write_edition(ROOT / "chapters")
    with pytest.raises(ValueError, match="refusing"):
        write_edition(ROOT)


@pytest.mark.book
def test_student_html_has_every_exercise_and_no_solution(edition):
    assert (VENDOR / "mathjax" / "tex-chtml.js").exists(), "run `make vendor` first (MathJax and widget JS)"
    html = build_html(edition)
    for path in CHAPTERS:
        teacher = nbformat.read(path, as_version=4)
        page = (html / "chapters" / f"{path.stem}.html").read_text()
        assert [s for s in solution_snippets(teacher) if s in page] == []
        for label in exercise_labels(teacher):
            assert f'id="{label}"' in page, f"{path.stem}: exercise {label} missing from the HTML"
        # the download button serves the student notebook
        served = html / "_sources" / "chapters" / f"{path.stem}.ipynb"
        assert served.exists() and "{solution-start}" not in served.read_text()


@pytest.fixture(scope="module")
def mosi_fixture(tmp_path_factory):
    """Unaligned-MOSI shapes (768-d text, 375 x 5 audio, 500 x 20 vision)."""
    return write_mmsa_fixture(tmp_path_factory.mktemp("fixture") / "mosi_unaligned_fixture.pkl",
                              "mosi_unaligned", sizes=(48, 16, 16))


@pytest.mark.notebooks
@pytest.mark.parametrize("name", [p.name for p in CHAPTERS], ids=lambda n: n.split(".")[0])
def test_student_notebook_runs_on_smoke(edition, name, tmp_path, monkeypatch, mosi_fixture):
    import papermill as pm

    monkeypatch.setenv("MSA_PROFILE", "smoke")
    monkeypatch.setenv("MSA_CLAIMS_DIR", str(tmp_path / "claims"))
    path = edition / "chapters" / name
    start = time.time()
    out = pm.execute_notebook(str(path), str(tmp_path / name), parameters={"DATASET": str(mosi_fixture)},
                              cwd=str(path.parent), progress_bar=False)
    assert out.metadata.kernelspec.name == numerics.KERNEL_NAME
    assert not [o for c in out.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    verdicts = [o["data"][MIME]["verdict"] for c in out.cells if ANSWER_TAG in tags(c)
                for o in c.get("outputs", []) if MIME in o.get("data", {})]
    assert verdicts and set(verdicts) == {"unanswered"}
    print(f"{name} (student edition) smoke on the MOSI fixture: {time.time() - start:.1f} s")
