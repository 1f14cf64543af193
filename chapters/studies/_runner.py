"""What every seed study shares: options, the pinned numerics, the data, the CSV with its header.

A study script defines ``rows_for_seed(seed, data, profile, args) -> list of dicts`` and calls
``run_study(__file__, __doc__, rows_for_seed)``; ``--seeds`` and ``--out`` come for free.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from msa_lib import numerics
from msa_lib.data import load
from msa_lib.io import write_study_csv
from msa_lib.profiles import profile, seed_everything


def run_study(script: str, doc: str, rows_for_seed, argv=None, add_arguments=None, recipe: str | None = None,
              seeds=(0, 1, 2)) -> int:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    ap.add_argument("--out", default=str(Path(script).with_suffix(".csv")))
    if add_arguments:
        add_arguments(ap)
    args = ap.parse_args(argv)
    p = profile("demo")
    seed_everything(0, threads=p.threads)
    print(numerics.ensure(p.threads))
    data = load(f"synth:{p.data_size}:0")
    rows = []
    for seed in args.seeds:
        t = time.perf_counter()
        rows += rows_for_seed(seed, data, p, args)
        print(f"seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    name = Path(script).name
    write_study_csv(pd.DataFrame(rows), args.out, f"seed study: python chapters/studies/{name}; SynthMSA demo seed 0; "
                    f"demo profile ({recipe or f'{p.epochs} epochs'})", p.threads)
    print("wrote", args.out)
    return 0
