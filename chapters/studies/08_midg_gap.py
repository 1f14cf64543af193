"""Chapter 8's generalization gap of every model in the book (demo profile, one training seed).

    python chapters/studies/08_midg_gap.py            # writes 08_midg_gap.csv beside it

Each model of chapters 2-8 (``msa_lib.recipes.BOOK_MODELS``), trained with its chapter's
SynthMSA recipe (``msa_lib.recipes.train_synth``), is trained

* once on all four domains (in-domain; selected on all four domains' validation clips) and
  scored on each domain's test clips, and
* once per held-out domain on the other three (selected on their validation clips) and
  scored on the held-out domain's test clips -- the same clips.

One row per (model, setting, domain): Non0 Acc-2, MAE, Corr and the seconds of training.
"""
from __future__ import annotations

from msa_lib.data.domains import domain_names, holdout, in_domain
from msa_lib.recipes import BOOK_MODELS, train_synth
from msa_lib.train import evaluate

from _runner import run_study


def scores(metrics: dict) -> dict:
    return {k: round(float(metrics[k]), 4) for k in ("Non0_acc_2", "MAE", "Corr")}


def rows_for_seed(seed: int, data, p, args=None) -> list[dict]:
    rows, names = [], domain_names(data)
    for name in (args.models.split(",") if args and args.models else BOOK_MODELS):
        model, res = train_synth(name, data, seed, threads=p.threads)
        for target in names:
            ref = in_domain(data, target)
            rows.append({"model": name, "setting": "in-domain", "domain": target, "seed": seed,
                         **scores(evaluate(model, ref.test, ref.spec)), "seconds": round(res.seconds, 1)})
        for target in names:
            _, res = train_synth(name, holdout(data, target), seed, threads=p.threads)
            rows.append({"model": name, "setting": "held-out", "domain": target, "seed": seed, **scores(res.test),
                         "seconds": round(res.seconds, 1)})
        print(f"  {name}: {res.seconds:.0f} s per run", flush=True)
    return rows


if __name__ == "__main__":
    def options(ap):
        ap.add_argument("--models", help="comma-separated subset of the book's models (default: all)")
    raise SystemExit(run_study(__file__, __doc__, rows_for_seed, add_arguments=options,
                               recipe="each model's chapter recipe", seeds=(0,)))
