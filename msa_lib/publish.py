"""The book as one PDF: Jupyter Book's single-page HTML printed by headless Chromium (no TeX).

``make pdf`` calls ``build_pdf``; the figures, tables and typeset equations are those of the
HTML book, built from the committed chapter outputs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nbformat

from .profiles import REPO_ROOT
from .student import build_html, write_edition

PRINTED = {"hide-input": "remove-input", "hide-output": "remove-output", "hide-cell": "remove-cell"}


def chromium() -> str:
    """Path of the headless Chromium binary, or a clear error saying what to install."""
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not path:
        raise RuntimeError("the PDF is printed by headless Chromium: install the Debian/Ubuntu package "
                           "'chromium' (sudo apt-get install chromium)")
    return path


def build_pdf(out: str | Path | None = None, source: str | Path | None = None, budget_ms: int = 60_000) -> Path:
    """Build ``source``'s single-page HTML and print it to ``out`` (default ``_build/book.pdf``).

    ``budget_ms``: virtual time Chromium gives MathJax and the widgets before printing.
    The PDF is written to a temporary name first and renamed when complete.
    """
    source = Path(source or REPO_ROOT).resolve()
    out = Path(out or source / "_build" / "book.pdf").resolve()
    # a copy of the book in which code hidden behind a toggle is left out (paper has no toggles,
    # and the single-page builder cannot render them)
    copy = write_edition(source / "_build" / "pdf-source", source, student=False)
    for path in (copy / "chapters").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            tags = cell.metadata.get("tags", [])
            cell.metadata["tags"] = [PRINTED.get(t, t) for t in tags]
        nbformat.write(nb, path)
    page = build_html(copy, builder="singlehtml") / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    proc = subprocess.run([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                           f"--virtual-time-budget={budget_ms}", "--run-all-compositor-stages-before-draw",
                           f"--print-to-pdf={tmp}", page.as_uri()], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
        raise RuntimeError(f"Chromium did not print the book:\n{proc.stderr[-2000:]}")
    os.replace(tmp, out)
    return out
