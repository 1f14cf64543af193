"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file ``msa_lib`` writes (datasets, checkpoints, metrics, claims, CSV tables) goes
through :func:`atomic_path`: the writer fills a temporary file in the same folder, which
is renamed over the target only when writing succeeded, and removed when it failed.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    with atomic_path("out/metrics.json") as tmp:
        tmp.write_text(...)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def write_json(obj, path, indent: int = 2) -> Path:
    """``obj`` as sorted, indented JSON at ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=True, default=str) + "\n")
    return Path(path)


def write_csv(df, path) -> Path:
    """A pandas DataFrame as CSV (no index) at ``path``, atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def write_study_csv(df, path, title: str, threads: int = 2) -> Path:
    """A study's table as CSV at ``path``, atomically, after one comment line saying what
    ran, when, on what machine, with which torch and numerics (read it with ``comment="#"``)."""
    import platform
    from datetime import date

    import torch

    from . import numerics

    header = (f"# {title}; {date.today()}; {platform.machine()}, {os.cpu_count()} cores, "
              f"{'CUDA' if torch.cuda.is_available() else 'CPU'}, {threads} threads; torch {torch.__version__}; "
              f"{numerics.describe(threads)}\n")
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(header)
            df.to_csv(fh, index=False)
    return Path(path)
