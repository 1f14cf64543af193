"""Data: the safe MMSA loader, SynthMSA, batches and dataset specs.

``load(name_or_path)`` is the one entry point chapters use:

* ``"synth"`` / ``"synth:demo"`` / ``"synth:full:3"`` -- SynthMSA of a size and seed
  (generated once, then cached);
* ``"mosi"``, ``"mosei"``, ``"sims"``, ... -- a real MMSA release placed under
  ``$MSA_DATA`` by ``data_scripts/prepare_real.py``;
* a path to any MMSA-format pickle.
"""
from __future__ import annotations

from pathlib import Path

from .batch import Batch, Split, iterate, make_batch
from .spec import MODALITIES, DatasetSpec


def load(name_or_path: str = "synth", size: str | None = None, seed: int = 0, verify: bool = True):
    """Load a dataset by name or path as an MMSAData (spec + train/valid/test Splits).

    ``"mosi+mosei+sims"`` (names or paths joined by "+"): one domain each, see ``harmonise.load_domains``.
    """
    text = str(name_or_path)
    if "+" in text and not Path(text).expanduser().exists():
        from .harmonise import load_domains
        return load_domains(text.split("+"), verify=verify)

    from .mmsa import load_mmsa, resolve_dataset_path
    from .synthetic import SIZES, synth_file

    if text == "synth" or text.startswith("synth:"):
        parts = text.split(":")
        size = parts[1] if len(parts) > 1 and parts[1] else (size or "demo")
        seed = int(parts[2]) if len(parts) > 2 else seed
        if size not in SIZES:
            raise ValueError(f"unknown SynthMSA size {size!r}; choose one of {sorted(SIZES)}")
        return load_mmsa(synth_file(size, seed), name="synthmsa")
    path = Path(text).expanduser()
    if path.suffix == ".pkl" or path.exists() or "/" in text:
        return load_mmsa(path, verify=verify)
    return load_mmsa(resolve_dataset_path(text), name=text, verify=verify)


def __getattr__(name):
    from importlib import import_module
    if name in {"load_mmsa", "MMSAData", "MMSAFormatError", "write_pickle_atomic", "KNOWN_SHA256",
                "resolve_dataset_path", "default_data_dir"}:
        return getattr(import_module(".mmsa", __name__), name)
    if name in {"make_mmsa_fixture", "write_mmsa_fixture"}:
        return getattr(import_module(".fixtures", __name__), name)
    raise AttributeError(f"module 'msa_lib.data' has no attribute {name!r}")


__all__ = ["Batch", "Split", "iterate", "make_batch", "MODALITIES", "DatasetSpec", "load"]
