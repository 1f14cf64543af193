"""Self-checks for the book's exercises, and bulk grading of handed-in notebooks.

A student writes, as the last line of a cell::

    from msa_lib.exercises import check
    check("ex-data-1", (0.5, 0.5, 1.0))

and sees ``ex-data-1: right``, ``ex-data-1: close — <hint>`` or
``ex-data-1: wrong — expected <form>``. The displayed output also carries the raw answer
(mime type :data:`MIME`), so an instructor can re-check a folder of handed-in notebooks
with :func:`grade` (or ``python -m msa_lib exercises grade FOLDER --out results.csv``).

The key (:data:`KEY_PATH`) stores salted hashes, never the answers themselves:

* numbers: element ``i`` with value ``v`` is quantised ``q = round(v / tol)`` and stored as
  ``sha256(f"{salt}|{exercise}|{i}|{tol}|{q}")[:24]``; an answer element is right when the
  hash of ``q - 1``, ``q`` or ``q + 1`` matches (about ±1.5 ``tol``), and close likewise with
  ``close_tol`` (default ``10 * tol``);
* text: the answer is normalised (stripped, lower-case, single spaces) and stored as
  ``sha256(f"{salt}|{exercise}|text|{normalised}")[:24]``; several spellings may be right.

Hashes hide the answers from a reader of the key; they do not stop a determined student
from trying values offline (the salt ships with the key). They are a study aid.

Maintainers add or update an entry with :func:`add_to_key`.
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import secrets
from dataclasses import dataclass
from pathlib import Path

from .io import write_json

KEY_PATH = Path(__file__).with_name("exercise_keys.json")
MIME = "application/vnd.msa-lib.check+json"
KEY_VERSION = 1
VERDICTS = ("right", "close", "wrong", "unanswered")
_COLOURS = {"right": "#1a7f37", "close": "#9a6700", "wrong": "#cf222e", "unanswered": "#57606a"}


# ---------------------------------------------------------------- the key file

def load_key(path=None) -> dict:
    """The key at ``path`` (default: the packaged :data:`KEY_PATH`) as a dict."""
    path = Path(path) if path is not None else KEY_PATH
    key = json.loads(path.read_text())
    if key.get("version") != KEY_VERSION:
        raise ValueError(f"{path}: key version {key.get('version')!r}, expected {KEY_VERSION}")
    return key


def _resolve_key(key) -> dict:
    """Accept a loaded key (dict), a path, or None (the packaged key)."""
    return key if isinstance(key, dict) else load_key(key)


def _entry(key: dict, exercise: str) -> dict:
    """The key entry for ``exercise``; a KeyError that lists the known ids otherwise."""
    try:
        return key["exercises"][exercise]
    except KeyError:
        known = ", ".join(sorted(key["exercises"])) or "(none)"
        raise KeyError(f"unknown exercise {exercise!r}; known exercises: {known}") from None


def exercises(key=None) -> dict[str, str]:
    """``{exercise id: form}`` for every exercise in the key, sorted by id."""
    key = _resolve_key(key)
    return {ex: entry["form"] for ex, entry in sorted(key["exercises"].items())}


# ---------------------------------------------------------------- hashing

def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _number_hash(salt: str, exercise: str, i: int, tol: float, q: int) -> str:
    return _digest(f"{salt}|{exercise}|{i}|{float(tol)}|{q}")


def _text_hash(salt: str, exercise: str, text: str) -> str:
    return _digest(f"{salt}|{exercise}|text|{normalise_text(text)}")


def normalise_text(text: str) -> str:
    """Strip, lower-case and collapse whitespace: ``"  Late   Fusion "`` -> ``"late fusion"``."""
    return " ".join(str(text).split()).lower()


def _quantise(value: float, tol: float) -> int:
    return int(round(float(value) / float(tol)))


# ---------------------------------------------------------------- answers as JSON

def plain_answer(answer):
    """The answer as plain JSON data: a number, a list, a string or None.

    Numpy scalars and arrays and torch tensors become numbers or lists (through their
    ``tolist``), other numbers through ``float()``; NaN and infinities become the strings
    ``"nan"``, ``"inf"``; anything else becomes its ``repr``. :func:`check` judges this
    plain form, so a notebook and :func:`grade` always reach the same verdict.
    """
    if answer is None or isinstance(answer, (str, bool)):
        return answer
    if isinstance(answer, int):
        return int(answer)
    if isinstance(answer, (list, tuple)):
        return [plain_answer(a) for a in answer]
    if hasattr(answer, "tolist"):                       # numpy scalars/arrays, torch tensors
        try:
            return plain_answer(answer.tolist())
        except (TypeError, ValueError, RuntimeError):
            pass
    try:
        value = float(answer)
    except (TypeError, ValueError, RuntimeError):
        return repr(answer)
    return value if math.isfinite(value) else str(value)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------- checking

@dataclass
class Verdict:
    """The outcome of :func:`check`; displays itself in a notebook with the raw answer."""

    exercise: str
    verdict: str
    message: str = ""
    answer: object = None

    def __str__(self) -> str:
        return f"{self.exercise}: {self.verdict}" + (f" — {self.message}" if self.message else "")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = _COLOURS.get(self.verdict, "#57606a")
        text = html.escape(self.message)
        return (f'<div class="msa-check"><b>{html.escape(self.exercise)}</b>: '
                f'<span style="color:{colour};font-weight:bold">{html.escape(self.verdict)}</span>'
                + (f" — {text}" if text else "") + "</div>")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """text/plain, text/html and :data:`MIME` (exercise, answer, verdict) for Jupyter."""
        bundle = {"text/plain": str(self), "text/html": self._repr_html_(),
                  MIME: {"exercise": self.exercise, "answer": self.answer, "verdict": self.verdict}}
        if include:
            bundle = {k: v for k, v in bundle.items() if k in include}
        if exclude:
            bundle = {k: v for k, v in bundle.items() if k not in exclude}
        return bundle


def check(exercise: str, answer, *, key=None) -> Verdict:
    """Judge ``answer`` to ``exercise``: right, close (with a hint), wrong or unanswered.

    ``key`` is a path to a key file or a loaded key; the default is the packaged key.
    An unknown ``exercise`` raises KeyError (listing the known ids); a malformed answer is
    ``wrong``, never an exception.
    """
    key = _resolve_key(key)
    entry = _entry(key, exercise)
    plain = plain_answer(answer)
    if plain is None:
        return Verdict(exercise, "unanswered", f"not answered yet: expected {entry['form']}", None)
    if entry["kind"] == "text":
        verdict = _judge_text(key["salt"], exercise, entry, plain)
    else:
        verdict = _judge_numbers(key["salt"], exercise, entry, plain)
    if verdict == "right":
        message = ""
    elif verdict == "close":
        message = entry.get("hint", "") or "close, but not quite"
    else:
        message = f"expected {entry['form']}"
    return Verdict(exercise, verdict, message, plain)


def _judge_text(salt: str, exercise: str, entry: dict, plain) -> str:
    if not isinstance(plain, str):
        return "wrong"
    digest = _text_hash(salt, exercise, plain)
    if digest in entry["right"]:
        return "right"
    return "close" if digest in entry.get("close", []) else "wrong"


def _judge_numbers(salt: str, exercise: str, entry: dict, plain) -> str:
    values = plain if isinstance(plain, list) else [plain]
    if len(values) != len(entry["right"]) or not all(_is_number(v) for v in values):
        return "wrong"

    def near(i: int, v: float, tol: float, hashes: list[str]) -> bool:
        q = _quantise(v, tol)
        return any(_number_hash(salt, exercise, i, tol, q + d) == hashes[i] for d in (-1, 0, 1))

    right = [near(i, v, entry["tol"], entry["right"]) for i, v in enumerate(values)]
    if all(right):
        return "right"
    close = [r or near(i, v, entry["close_tol"], entry["close"]) for i, (r, v) in enumerate(zip(right, values))]
    return "close" if all(close) else "wrong"


# ---------------------------------------------------------------- maintaining the key

def make_entry(exercise: str, answer, form: str, *, tol=None, close_tol=None, hint: str = "",
               accept=(), close=(), salt=None) -> dict:
    """The key entry for ``exercise`` whose true answer is ``answer`` (never stored).

    Numbers (a number or a sequence of numbers): ``tol`` is required unless every value is
    an integer (then 0.5); ``close_tol`` defaults to ``10 * tol``. Text (a str): ``accept``
    lists more right spellings, ``close`` spellings that earn the hint. ``salt`` defaults to
    the packaged key's salt.
    """
    if salt is None:
        salt = load_key()["salt"]
    if isinstance(answer, str):
        return {"form": form, "kind": "text", "hint": hint,
                "right": sorted({_text_hash(salt, exercise, a) for a in (answer, *accept)}),
                "close": sorted({_text_hash(salt, exercise, c) for c in close})}
    plain = plain_answer(answer)
    values = plain if isinstance(plain, list) else [plain]
    if not values or not all(_is_number(v) for v in values):
        raise ValueError(f"{exercise}: the answer must be a string, a number or numbers, got {answer!r}")
    if tol is None:
        if not all(isinstance(v, int) for v in values):
            raise ValueError(f"{exercise}: give tol= for an answer that is not all integers")
        tol = 0.5
    tol = float(tol)
    close_tol = float(close_tol) if close_tol is not None else 10 * tol
    if not (tol > 0 and close_tol >= tol):
        raise ValueError(f"{exercise}: need 0 < tol <= close_tol, got tol={tol}, close_tol={close_tol}")
    return {"form": form, "kind": "numbers", "tol": tol, "close_tol": close_tol, "hint": hint,
            "right": [_number_hash(salt, exercise, i, tol, _quantise(v, tol)) for i, v in enumerate(values)],
            "close": [_number_hash(salt, exercise, i, close_tol, _quantise(v, close_tol))
                      for i, v in enumerate(values)]}


def add_to_key(exercise: str, answer, form: str, *, key_path=None, **kw) -> dict:
    """Write (or replace) the entry for ``exercise`` in the key file, atomically.

    ``key_path`` defaults to :data:`KEY_PATH`; a missing file or salt is created
    (``secrets.token_hex(16)``). ``kw`` goes to :func:`make_entry`. Returns the entry.
    """
    path = Path(key_path) if key_path is not None else KEY_PATH
    key = load_key(path) if path.exists() else {"version": KEY_VERSION, "exercises": {}}
    key.setdefault("salt", secrets.token_hex(16))
    entry = make_entry(exercise, answer, form, salt=key["salt"], **kw)
    key["exercises"][exercise] = entry
    write_json(key, path, indent=1)
    return entry


# ---------------------------------------------------------------- grading notebooks

def notebook_paths(paths) -> list[Path]:
    """``paths`` as a list of notebook files: a folder gives every ``*.ipynb`` below it
    (sorted, ``.ipynb_checkpoints`` left out), a file itself, a list its items."""
    if isinstance(paths, (str, Path)):
        root = Path(paths)
        if root.is_dir():
            return sorted(p for p in root.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        if root.is_file():
            return [root]
        raise FileNotFoundError(f"no such folder or notebook: {root}")
    return [Path(p) for p in paths]


def answers_in(path) -> dict:
    """``{exercise: answer}`` from the check outputs of the notebook at ``path``, in cell
    order, the last answer per exercise winning. Raises when the file is no notebook."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    found = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") not in ("execute_result", "display_data"):
                continue
            payload = output.get("data", {}).get(MIME)
            if isinstance(payload, str):                 # some writers store JSON as text
                payload = json.loads(payload)
            if isinstance(payload, dict) and isinstance(payload.get("exercise"), str):
                found.pop(payload["exercise"], None)     # keep the dict in order of last answers
                found[payload["exercise"]] = payload.get("answer")
    return found


def grade(paths, *, key=None):
    """Re-check every handed-in answer: a DataFrame with one row per notebook and exercise.

    Columns: notebook, exercise, verdict, answer (JSON text, empty when absent), message.
    The verdict stored in a notebook is ignored: answers are checked again with the key.
    Exercises without an answer are ``unanswered``; answers to ids not in the key are
    ``unknown exercise``; a file that is not a readable notebook gives one ``unreadable`` row.
    """
    import pandas as pd

    root = Path(paths) if isinstance(paths, (str, Path)) and Path(paths).is_dir() else None
    key = _resolve_key(key)
    known = sorted(key["exercises"])
    rows = []
    for path in notebook_paths(paths):
        name = path.relative_to(root).as_posix() if root is not None else str(path)
        try:
            answers = answers_in(path)
        except Exception as err:                          # one broken file must not stop grading
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            rows.append({"notebook": name, "exercise": "", "verdict": "unreadable", "answer": None,
                         "message": f"{type(err).__name__}: {reason}"})
            continue
        for ex in known:
            v = check(ex, answers.get(ex), key=key)
            rows.append({"notebook": name, "exercise": ex, "verdict": v.verdict,
                         "answer": None if v.answer is None else json.dumps(v.answer), "message": v.message})
        for ex, answer in answers.items():
            if ex not in key["exercises"]:
                rows.append({"notebook": name, "exercise": ex, "verdict": "unknown exercise",
                             "answer": json.dumps(answer), "message": "this exercise id is not in the key"})
    return pd.DataFrame(rows, columns=["notebook", "exercise", "verdict", "answer", "message"])


__all__ = ["KEY_PATH", "MIME", "Verdict", "check", "load_key", "exercises", "make_entry", "add_to_key",
           "grade", "answers_in", "notebook_paths", "plain_answer", "normalise_text"]
