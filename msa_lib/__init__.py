"""msa_lib: the library behind *Multimodal Sentiment Analysis in Practice*.

Submodules: ``data`` (MMSA loader, SynthMSA, batches), ``missing`` (missing-data
protocols), ``metrics``, ``layers``, ``models`` (registry: ``models.build``),
``train`` (one trainer), ``profiles`` (smoke/demo/full, device, claims), ``viz``.
Heavy dependencies (transformers, sentence-transformers) load only when used.

Importing the package pins the CPU numerics (``numerics.pin_environment``): the
settings take effect when torch has not computed anything yet in this process.
"""
from __future__ import annotations

import importlib

from . import numerics

numerics.pin_environment()

from .profiles import Claims, device, profile, seed_everything  # noqa: E402

__version__ = "0.1.0"
_SUBMODULES = {"data", "missing", "metrics", "layers", "models", "train", "profiles", "viz", "cli", "bench"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'msa_lib' has no attribute {name!r}")


__all__ = ["Claims", "device", "profile", "seed_everything", "numerics", *sorted(_SUBMODULES)]
