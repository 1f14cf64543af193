"""Chapter 9's memory column: each model's peak memory in one training, measured alike for all.

    python chapters/studies/09_costs.py            # writes 09_costs.csv beside it (about 6 minutes)

The committed grid (09_benchmark_grid.csv) was computed before ``msa_lib.grid`` measured memory
this way: its workers were reused, and the resident memory that a job added above what the
worker already held depended on what that worker had run before (0.2 MB for one model, 133 MB
for another). Here every model trains once (seed 0, complete data, the grid's ``run_job`` with
one thread) in one process, after the worker's one-time warm-up, each job starting from the C
heap's free pages handed back (``grid._release_free_memory``). One row per model: the grid's
cost fields.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from msa_lib import grid, numerics
from msa_lib.io import write_study_csv
from msa_lib.models import available
from msa_lib.profiles import seed_everything
from msa_lib.recipes import BOOK_MODELS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".csv")))
    args = ap.parse_args(argv)
    seed_everything(0, threads=2)
    print(numerics.ensure(2))
    rows = []
    for method in list(BOOK_MODELS) + [m for m in available() if m not in BOOK_MODELS]:
        job = grid.plan([method], ["complete"], [0], "demo", "synth", grid.data_name("synth", "demo"))[0]
        record = grid.run_job(job, None, threads=1)[0]
        rows.append({"method": method, **record["cost"], "Non0_acc_2": record["metrics"]["Non0_acc_2"]})
        print(rows[-1], flush=True)
    seed_everything(0, threads=2)
    write_study_csv(pd.DataFrame(rows), args.out, f"costs: python chapters/studies/09_costs.py; SynthMSA demo seed 0, "
                    f"seed 0, complete data, one process, 1 torch thread per training; code version {job.version}")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
