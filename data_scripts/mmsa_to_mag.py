#!/usr/bin/env python
"""Convert an MMSA pickle (e.g. MOSI/Processed/aligned_50.pkl) to the MAG-BERT tuple format
that HME's official loader reads (``HME_MSA/HME_main.py``; see ../shared/specs/hme.md, 2.2).

    python data_scripts/mmsa_to_mag.py data/MOSI/Processed/aligned_50.pkl aligned_mosi.pkl

MMSA: ``{"train" | "valid" | "test": {"raw_text", "audio", "vision", "regression_labels", "id", ...}}``
MAG:  ``{"train" | "dev" | "test": [((words, visual, acoustic), label, segment), ...]}`` with
``words = raw_text.split()``, ``visual = vision[i]`` (T, dv), ``acoustic = audio[i]`` (T, da),
``label = regression_labels[i]`` and ``segment = id[i]`` -- the spec's reading of the format
(marked there as inferred: the official repository ships no converter). The frames are kept
whole, padding included, as the official README's renamed MMSA files would give them.

The input is read with msa_lib's safe unpickler (no code in it can run); the output is
written atomically, so an interrupted run leaves no half-written file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from msa_lib.data.mmsa import MMSAFormatError, _unpickle, write_pickle_atomic  # noqa: E402

SPLITS = {"train": "train", "valid": "dev", "test": "test"}     # MMSA name -> MAG name
FIELDS = ("raw_text", "audio", "vision", "regression_labels", "id")


def convert(mmsa: dict, source: str = "the input") -> dict:
    """The MAG-format dict of an MMSA dict; a missing split or field is an error naming it."""
    if not isinstance(mmsa, dict):
        raise MMSAFormatError(f"{source}: expected a dict of splits, got {type(mmsa).__name__}")
    absent = [s for s in SPLITS if s not in mmsa]
    if absent:
        raise MMSAFormatError(f"{source}: no split {absent[0]!r} (have {sorted(mmsa)})")
    out = {}
    for split, mag_name in SPLITS.items():
        part = mmsa[split]
        missing = [f for f in FIELDS if f not in part]
        if missing:
            raise MMSAFormatError(f"{source}, split {split!r}: missing field(s) {missing}")
        n = len(part["raw_text"])
        for f in FIELDS[1:]:
            if len(part[f]) != n:
                raise MMSAFormatError(f"{source}, split {split!r}: {f} has {len(part[f])} rows, raw_text has {n}")
        labels = np.asarray(part["regression_labels"], dtype=np.float32).reshape(n)
        out[mag_name] = [((str(part["raw_text"][i]).split(), np.asarray(part["vision"][i], dtype=np.float32),
                           np.asarray(part["audio"][i], dtype=np.float32)), float(labels[i]), str(part["id"][i]))
                         for i in range(n)]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="an MMSA .pkl (aligned_50.pkl for HME's official runs)")
    ap.add_argument("dest", type=Path, help="where to write the MAG-format .pkl")
    args = ap.parse_args(argv)
    if not args.src.is_file():
        print(f"error: {args.src} is not a file", file=sys.stderr)
        return 2
    try:
        mag = convert(_unpickle(args.src), str(args.src))
    except MMSAFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_pickle_atomic(mag, args.dest)
    (words, visual, acoustic), _, _ = mag["train"][0]
    print(f"wrote {args.dest}: " + ", ".join(f"{k} {len(v)}" for k, v in mag.items())
          + f"; visual {visual.shape}, acoustic {acoustic.shape} per clip")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
