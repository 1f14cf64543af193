"""Exercises and solutions follow the book's pattern, every chapter opens with its objectives,
prerequisites and time and ends with a summary, and every chapter runs on the smoke
profile with its solutions (so a solution that breaks fails here)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat
import pytest
from claims_ranges import check

from msa_lib import numerics
from msa_lib.exercises import MIME, exercises
from msa_lib.profiles import load_claims
from msa_lib.student import EXERCISE_TAG, LABEL, SOLUTION_TAG, exercise_labels, tags

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
HEADER = re.compile(r"^(`{3,})\{exercise\} Difficulty ([123]) · (\d+) min$", re.M)


def read(path):
    return nbformat.read(path, as_version=4)


def solution_blocks(nb) -> dict[str, list]:
    """label -> the cells from its {solution-start} to its {solution-end}, both included."""
    blocks, current = {}, None
    for cell in nb.cells:
        start = re.search(r"\{solution-start\}\s+(\S+)", cell.source)
        if start:
            assert current is None, f"solution {start.group(1)} starts inside another"
            current = start.group(1)
            blocks[current] = []
        if current is not None:
            blocks[current].append(cell)
            if "{solution-end}" in cell.source:
                current = None
    assert current is None, f"solution {current} never ends"
    return blocks


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_exercises_and_solutions_are_separate_tagged_cells(path):
    nb = read(path)
    labels = exercise_labels(nb)
    assert len(labels) >= 3 and len(set(labels)) == len(labels)
    prefix = f"ex-{labels[0].split('-')[1]}-"
    assert labels == [f"{prefix}{i}" for i in range(1, len(labels) + 1)], "labels follow the reading order"
    for cell in nb.cells:
        assert not re.search(r"^`{3,}\{solution\}", cell.source, re.M), "old-style solution inside a cell"
        if EXERCISE_TAG in tags(cell) and LABEL.search(cell.source):
            assert HEADER.search(cell.source), f"{LABEL.search(cell.source).group(1)}: no 'Difficulty d · m min'"
            assert "{solution" not in cell.source
    blocks = solution_blocks(nb)
    assert sorted(blocks) == sorted(labels), "every exercise has exactly one solution"
    for label, cells in blocks.items():
        assert all(SOLUTION_TAG in tags(c) for c in cells), f"{label}: an untagged cell inside the solution"
        assert len(cells) >= 3 and ":class: dropdown" in cells[0].source
    n_tagged = sum(SOLUTION_TAG in tags(c) for c in nb.cells)
    assert n_tagged == sum(len(c) for c in blocks.values()), "a cell tagged 'solution' outside any solution"
    for label in set(labels) & set(exercises()):   # self-checked exercises call the check in their solution
        assert any(f'check("{label}"' in c.source for c in blocks[label] if c.cell_type == "code")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_opens_with_objectives_prerequisites_time_and_ends_with_a_summary(path):
    nb = read(path)
    framing = [c for c in nb.cells if "framing" in tags(c)]
    assert len(framing) == 1 and nb.cells.index(framing[0]) == 1, "the framing cell follows the title"
    text = framing[0].source
    assert "**Objectives.**" in text and "**Prerequisites.**" in text and "**Time.**" in text
    objectives = re.findall(r"^\d+\. ", text.split("**Prerequisites.**")[0], re.M)
    assert 3 <= len(objectives) <= 5
    labels = set(exercise_labels(nb))
    for item in re.split(r"^\d+\. ", text.split("**Prerequisites.**")[0], flags=re.M)[1:]:
        cited = set(re.findall(r"\{ref\}`(ex-[\w-]+)`", item))
        assert cited and cited <= labels, f"objective without an existing exercise: {item[:60]!r}"
    # the stated demo time agrees with the committed demo run (papermill's duration)
    minutes = re.search(r"(under a minute|about (\d+) minutes?) with the `demo`", text)
    assert minutes, "the time section states the demo run time"
    duration = nb.metadata.get("papermill", {}).get("duration")
    assert duration, "the committed chapter carries papermill's duration"
    stated = 1.0 if minutes.group(2) is None else float(minutes.group(2))
    if minutes.group(2) is None:
        assert duration < 60
    else:
        assert stated / 2 <= duration / 60 <= stated * 1.6 + 0.5, f"states {stated} min, ran {duration / 60:.1f}"
    titles = [t for c in nb.cells if c.cell_type == "markdown" for t in re.findall(r"^## (.+)$", c.source, re.M)]
    assert titles[-2:] == ["Summary", "Exercises"], "the chapter ends with its summary, then the exercises"


def check_outputs(nb) -> list[dict]:
    return [o["data"][MIME] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if MIME in o.get("data", {})]


@pytest.mark.notebooks
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_on_smoke_with_its_solutions(path, tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("MSA_PROFILE", "smoke")
    monkeypatch.setenv("MSA_CLAIMS_DIR", str(tmp_path / "claims"))
    start = time.time()
    out = pm.execute_notebook(str(path), str(tmp_path / path.name), parameters={"DATASET": "synth"},
                              cwd=str(path.parent), progress_bar=False)   # the kernel its metadata names
    assert out.metadata.kernelspec.name == numerics.KERNEL_NAME
    errors = [o for c in out.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    first_output = next("".join(o.get("text", "") for o in c.outputs) for c in out.cells if c.get("outputs"))
    assert ("numerics: pinned" if numerics.mode() == "pinned" else "numerics: machine defaults") in first_output
    solutions = [c for c in out.cells if c.cell_type == "code" and SOLUTION_TAG in tags(c)]
    assert solutions and all(c.execution_count for c in solutions), "every solution cell ran"
    verdicts = {d["exercise"]: d["verdict"] for d in check_outputs(out)}
    keyed = set(exercise_labels(out)) & set(exercises())
    assert keyed and verdicts == {label: "right" for label in keyed}, json.dumps(verdicts)
    assert check(path.stem, "smoke", load_claims(path.stem, "smoke", tmp_path / "claims")) == []
    print(f"{path.stem} smoke with solutions: {time.time() - start:.1f} s")
