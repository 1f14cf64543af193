"""Exercise self-checks: verdicts, a key without answers, notebook outputs, bulk grading."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import nbformat
import pytest

from msa_lib import exercises as exm
from msa_lib.exercises import KEY_PATH, MIME, Verdict, add_to_key, check, grade, load_key, make_entry

SHIPPED = {
    "ex-data-1": (0.5, 0.5, 1.0),
    "ex-fusion-1": (157248, 8788032),
    "ex-dash-1": (0.0321393, 2.4503945),
    "ex-hme-1": (44090573, 96),
    "ex-hme-3": (0.0, 1.0),
    "ex-cyin-1": (46065028, 42872833),
    "ex-cyin-3": (12, 4),
    "ex-mmslf-1": (533953, 45888),
    "ex-midg-1": (0.786933, 0.512033),
    "ex-bench-1": (0.01657, 2),
    "ex-bench-4": (1.0, 0.0839),
    "ex-lnln-3": (6483012, 2550852),
}


@pytest.fixture
def key(tmp_path):
    """A temporary key with one numeric and one text exercise."""
    path = tmp_path / "key.json"
    add_to_key("num", (1.25, 40), "(a ratio, a count): two numbers", key_path=path, tol=0.01, close_tol=0.2,
               hint="check the units")
    add_to_key("word", "Late Fusion", "the name of the method", key_path=path, accept=["decision-level fusion"],
               close=["early fusion"], hint="where do the modalities meet?")
    return path


def test_numeric_verdicts(key):
    assert check("num", (1.25, 40), key=key).verdict == "right"
    assert check("num", [1.26, 40.0], key=key).verdict == "right"          # within the tolerance
    v = check("num", (1.4, 40), key=key)
    assert (v.verdict, v.message) == ("close", "check the units")
    assert check("num", (3.0, 40), key=key).verdict == "wrong"
    assert check("num", (1.25, 41), key=key).verdict == "wrong"           # one element far off
    v = check("num", None, key=key)
    assert v.verdict == "unanswered" and "(a ratio, a count)" in v.message


@pytest.mark.parametrize("bad", [1.25, (1.25,), (1.25, 40, 0), ("1.25", 40), (float("nan"), 40),
                                 (float("inf"), 40), (True, 40), {"a": 1}, "1.25, 40"])
def test_malformed_numeric_answers_are_wrong_with_the_form(key, bad):
    v = check("num", bad, key=key)
    assert v.verdict == "wrong" and v.message == "expected (a ratio, a count): two numbers"


def test_numpy_and_torch_answers(key):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    assert check("num", (np.float32(1.25), np.int64(40)), key=key).verdict == "right"
    assert check("num", (torch.tensor(1.25), torch.tensor(40.0)), key=key).verdict == "right"
    assert check("num", np.array([1.25, 40]), key=key).verdict == "right"


def test_text_verdicts(key):
    assert check("word", "  late   FUSION ", key=key).verdict == "right"
    assert check("word", "Decision-level fusion", key=key).verdict == "right"
    assert check("word", "Early Fusion", key=key).verdict == "close"
    assert check("word", "tensor fusion", key=key).verdict == "wrong"
    assert check("word", 3, key=key).verdict == "wrong"
    assert check("word", None, key=key).verdict == "unanswered"


def test_str_and_unknown_exercise(key):
    assert str(check("num", (1.25, 40), key=key)) == "num: right"
    assert str(check("num", (1.4, 40), key=key)) == "num: close — check the units"
    assert str(check("num", (9, 9), key=key)) == "num: wrong — expected (a ratio, a count): two numbers"
    with pytest.raises(KeyError, match="known exercises: num, word"):
        check("nope", 1, key=key)


def test_make_entry_validates():
    with pytest.raises(ValueError, match="tol"):
        make_entry("x", 0.5, "a number", salt="s")                 # floats need a tolerance
    with pytest.raises(ValueError):
        make_entry("x", (1, "a"), "numbers", salt="s")
    entry = make_entry("x", (3, 4), "two integers", salt="s")
    assert entry["tol"] == 0.5 and entry["close_tol"] == 5.0 and len(entry["right"]) == 2


def test_add_to_key_is_atomic_and_keeps_the_salt(key):
    first = load_key(key)
    add_to_key("num", (2.5, 40), "changed", key_path=key, tol=0.01)
    second = load_key(key)
    assert second["salt"] == first["salt"] and len(second["salt"]) == 32
    assert set(second["exercises"]) == {"num", "word"}
    assert check("num", (2.5, 40), key=key).verdict == "right"
    assert check("num", (1.25, 40), key=key).verdict == "wrong"
    assert not list(key.parent.glob("*.tmp"))
    assert key.read_text() == json.dumps(second, indent=1, sort_keys=True) + "\n"


def test_shipped_key_hides_the_answers():
    text = KEY_PATH.read_text()
    key = json.loads(text)
    assert set(key["exercises"]) == set(SHIPPED)
    for needle in ("157248", "8788032", "0.0321", "2.450", "6483012", "2550852"):
        assert needle not in text, needle
    for entry in key["exercises"].values():
        assert set(entry) == {"form", "kind", "tol", "close_tol", "right", "close", "hint"}


@pytest.mark.parametrize("exercise", sorted(SHIPPED))
def test_shipped_answers_check(exercise):
    answer = SHIPPED[exercise]
    assert check(exercise, answer).verdict == "right"
    perturbed = tuple(a * 1.5 + 1 for a in answer)
    assert check(exercise, perturbed).verdict == "wrong"
    assert check(exercise, answer[:-1]).verdict == "wrong"


def test_mime_bundle_carries_the_answer(key):
    v = check("num", (1.25, 40), key=key)
    bundle = v._repr_mimebundle_()
    assert bundle["text/plain"] == "num: right" and "right" in bundle["text/html"]
    assert bundle[MIME] == {"exercise": "num", "answer": [1.25, 40], "verdict": "right"}
    nan = check("num", (float("nan"), 40), key=key)._repr_mimebundle_()[MIME]
    assert nan["answer"] == ["nan", 40] and nan["verdict"] == "wrong"     # strict JSON: no NaN
    # an output built from the bundle is a valid notebook output that round-trips through JSON
    nb = nbformat.v4.new_notebook(cells=[_cell(bundle)])
    nbformat.validate(nb)
    again = nbformat.reads(nbformat.writes(nb), as_version=4)
    assert again.cells[0].outputs[0]["data"][MIME]["answer"] == [1.25, 40]


def test_ipython_puts_the_mime_type_in_the_cell_output(key):
    formatters = pytest.importorskip("IPython.core.formatters")
    data, _ = formatters.DisplayFormatter().format(check("word", "late fusion", key=key))
    assert data[MIME] == {"exercise": "word", "answer": "late fusion", "verdict": "right"}
    assert data["text/plain"] == "word: right"


def _cell(bundle, source="check(...)"):
    out = nbformat.v4.new_output("execute_result", data=bundle, execution_count=1)
    return nbformat.v4.new_code_cell(source, outputs=[out], execution_count=1)


def _handed_in(folder, key):
    """Four submissions: right, forged, empty, corrupt."""
    right = nbformat.v4.new_notebook(cells=[
        _cell(check("num", (9, 9), key=key)._repr_mimebundle_()),          # a first try, later fixed
        nbformat.v4.new_markdown_cell("text"),
        _cell(check("num", (1.25, 40), key=key)._repr_mimebundle_()),
        _cell(check("word", "early fusion", key=key)._repr_mimebundle_()),
        _cell(Verdict("extra", "right", "", 1)._repr_mimebundle_()),          # an id not in the key
    ])
    forged_bundle = check("num", (3.0, 40), key=key)._repr_mimebundle_()
    forged_bundle["text/plain"] = "num: right"
    forged_bundle[MIME]["verdict"] = "right"
    forged = nbformat.v4.new_notebook(cells=[_cell(forged_bundle)])
    (folder / "sub").mkdir(parents=True)
    nbformat.write(right, folder / "a_right.ipynb")
    nbformat.write(forged, folder / "b_forged.ipynb")
    empty = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(empty, folder / "sub" / "c_empty.ipynb")
    (folder / "d_corrupt.ipynb").write_text("{not json")
    (folder / "notes.txt").write_text("not a notebook, ignored")
    (folder / ".ipynb_checkpoints").mkdir()                                 # Jupyter's copies are left out
    nbformat.write(forged, folder / ".ipynb_checkpoints" / "b_forged-checkpoint.ipynb")


EXPECTED = {
    ("a_right.ipynb", "num"): "right",
    ("a_right.ipynb", "word"): "close",
    ("a_right.ipynb", "extra"): "unknown exercise",
    ("b_forged.ipynb", "num"): "wrong",
    ("b_forged.ipynb", "word"): "unanswered",
    ("sub/c_empty.ipynb", "num"): "unanswered",
    ("sub/c_empty.ipynb", "word"): "unanswered",
    ("d_corrupt.ipynb", ""): "unreadable",
}


def test_grade_rechecks_every_notebook(tmp_path, key):
    _handed_in(tmp_path / "hand-in", key)
    df = grade(tmp_path / "hand-in", key=key)
    assert list(df.columns) == ["notebook", "exercise", "verdict", "answer", "message"]
    assert {(r.notebook, r.exercise): r.verdict for r in df.itertuples()} == EXPECTED
    assert len(df) == len(EXPECTED)
    row = df[(df.notebook == "a_right.ipynb") & (df.exercise == "num")].iloc[0]
    assert json.loads(row.answer) == [1.25, 40]                           # the last answer counts
    assert "NotJSONError" in df[df.verdict == "unreadable"].iloc[0].message


def test_cli_grade_writes_the_csv(tmp_path, key, monkeypatch):
    folder = tmp_path / "hand-in"
    _handed_in(folder, key)
    # the CLI grades against the packaged key: answer the shipped exercises in one notebook
    nb = nbformat.v4.new_notebook(cells=[_cell(check(ex, SHIPPED[ex])._repr_mimebundle_()) for ex in SHIPPED])
    nb.cells.append(_cell(check("ex-dash-1", (0.5, 2.45))._repr_mimebundle_()))   # last answer: wrong
    nbformat.write(nb, folder / "e_shipped.ipynb")
    out = tmp_path / "results" / "grades.csv"
    r = subprocess.run([sys.executable, "-m", "msa_lib", "exercises", "grade", str(folder), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "unreadable" in r.stdout and "total" in r.stdout
    with open(out, newline="") as fh:
        rows = {(row["notebook"], row["exercise"]): row["verdict"] for row in csv.DictReader(fh)}
    assert rows[("d_corrupt.ipynb", "")] == "unreadable"
    assert rows[("b_forged.ipynb", "ex-data-1")] == "unanswered"
    assert rows[("b_forged.ipynb", "num")] == "unknown exercise"          # not in the packaged key
    assert rows[("e_shipped.ipynb", "ex-fusion-1")] == "right"
    assert rows[("e_shipped.ipynb", "ex-dash-1")] == "wrong"
    assert rows[("sub/c_empty.ipynb", "ex-lnln-3")] == "unanswered"


def test_cli_missing_folder_and_list(tmp_path):
    missing = tmp_path / "no-such-folder"
    r = subprocess.run([sys.executable, "-m", "msa_lib", "exercises", "grade", str(missing)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and str(missing) in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "msa_lib", "exercises", "list"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and all(ex in r.stdout for ex in SHIPPED)


def test_import_does_not_load_torch():
    code = "import sys, msa_lib.exercises; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert exm.KEY_PATH.name == "exercise_keys.json"
