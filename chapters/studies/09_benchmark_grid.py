"""Chapter 9's benchmark: every model of the library under every condition, three seeds (demo profile).

    python chapters/studies/09_benchmark_grid.py            # writes 09_benchmark_grid.csv beside it

The same as ``python -m msa_lib grid --profile demo --seeds 0,1,2`` (local backend, two workers of
one torch thread each; the cells are kept in ``_build/grid/demo``, so a stopped run resumes), then
the tidy table with the columns a reader needs: method, condition, seed, kind, value, metric set,
code version, the MMSA metrics and the costs. The comment line above the header says what ran,
when, on what machine. About an hour on 2 CPU cores.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from msa_lib import grid, numerics
from msa_lib.io import write_study_csv
from msa_lib.profiles import REPO_ROOT, seed_everything
from msa_lib.models import available
from msa_lib.recipes import BOOK_MODELS

DROP = ("preset", "profile", "data", "device", "date")     # the same in every row: said in the header


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--backend", default="local", choices=grid.BACKENDS)
    ap.add_argument("--results", default=str(REPO_ROOT / "_build" / "grid" / "demo"))
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".csv")))
    args = ap.parse_args(argv)
    seed_everything(0, threads=2)
    print(numerics.ensure(2))
    data = grid.data_name("synth", "demo")
    from msa_lib.data import load
    from msa_lib.data.domains import domain_names
    conditions = grid.all_conditions(domain_names(load(data)))
    methods = list(BOOK_MODELS) + [m for m in available() if m not in BOOK_MODELS]   # + audio_only, vision_only
    jobs = grid.plan(methods, conditions, [int(s) for s in args.seeds.split(",")], "demo", "synth", data)
    table = grid.run_grid(jobs, args.results, backend=args.backend, workers=args.workers, threads=1)
    devices = ", ".join(sorted(set(table["device"])))
    dates = ", ".join(sorted(set(table["date"])))
    first = [*grid.KEY_FIELDS, "kind", "value", "metric_set"]
    table = table[[c for c in first if c not in DROP] + [c for c in table.columns if c not in first and c not in DROP]]
    write_study_csv(table, args.out,
                    f"benchmark grid: python chapters/studies/09_benchmark_grid.py (= python -m msa_lib grid --profile "
                    f"demo --seeds {args.seeds}); {data}; code version {table['version'].iloc[0]}; cells computed "
                    f"{dates} on {devices}, {args.backend} backend, {args.workers} workers x 1 thread", threads=2)
    print("wrote", args.out, len(table), "cells")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
