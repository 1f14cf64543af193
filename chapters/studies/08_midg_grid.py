"""Chapter 8's domain-generalization grid: every method, every held-out domain, three seeds (demo profile).

    python chapters/studies/08_midg_grid.py           # writes 08_midg_grid.csv beside it

SynthMSA has four domains. For each held-out domain (leave one domain out; model selection
on the other domains' validation clips) and each training seed, this study trains

* the **backbone** -- MIDG with its three parts switched off (no Cross-Modal Adapter, no
  disentanglement, one MLP instead of the experts): the same encoders, a plain head -- with
  each domain-generalization objective of ``msa_lib.dg``: ERM, IRM, CORAL, the
  domain-adversarial head and inter-domain Mixup;
* ERM again, selected on the held-out domain's validation clips (the **oracle**: not a
  method, an upper bound on what selection can do);
* **MIDG** (the reconstruction, its synth preset) and its ablations: without the adapter,
  without the disentanglement (so without simulated out-of-domain views), one expert.

And, per seed, the **in-domain** references: the backbone (ERM) and MIDG trained and selected
on all four domains, scored on each domain's test clips -- the same clips the held-out runs
are scored on, so ``in-domain - held-out`` is the generalization gap.

One row per (method, setting, held-out domain, seed): Non0 Acc-2, MAE, Corr, the selected
epoch and the seconds of training. Seed 0's rows for the backbone ERM and MIDG on the
held-out domain the chapter trains live repeat the chapter's runs exactly (it checks).
"""
from __future__ import annotations

from msa_lib.data.domains import domain_names, holdout, in_domain
from msa_lib.models import build
from msa_lib.profiles import seed_everything
from msa_lib.train import evaluate, fit

from _runner import run_study

BACKBONE = dict(use_adapter=False, use_disentangle=False, use_moie=False)
METHODS = {                      # label -> (model options, TrainConfig overrides, selection)
    "ERM": (BACKBONE, {}, "source"),
    "IRM": (BACKBONE, {"dg": "irm"}, "source"),
    "CORAL": (BACKBONE, {"dg": "coral"}, "source"),
    "adversarial": (BACKBONE, {"dg": "adversarial"}, "source"),
    "Mixup": (BACKBONE, {"dg": "mixup"}, "source"),
    "ERM (oracle selection)": (BACKBONE, {}, "oracle"),
    "MIDG": ({}, {}, "source"),
    "MIDG w/o adapter": ({"use_adapter": False}, {}, "source"),
    "MIDG w/o disentanglement": ({"use_disentangle": False}, {}, "source"),
    "MIDG one expert": ({"n_experts": 1}, {}, "source"),
}
IN_DOMAIN = ("ERM", "MIDG")


def train(data, seed: int, threads: int, options: dict, overrides: dict):
    """MIDG's synth preset with ``options``, trained by its recipe plus ``overrides`` -> (model, result).
    The chapter calls the same function."""
    seed_everything(seed, threads=threads)
    model = build("midg", data.spec, preset="synth", **options)
    return model, fit(model, data, model.cfg.train_config(seed=seed, threads=threads, **overrides))


def scores(metrics: dict) -> dict:
    return {k: round(float(metrics[k]), 4) for k in ("Non0_acc_2", "MAE", "Corr")}


def rows_for_seed(seed: int, data, p, args=None) -> list[dict]:
    rows, names = [], domain_names(data)
    for label, (options, overrides, select) in METHODS.items():
        for target in names:
            model, res = train(holdout(data, target, select), seed, p.threads, options, overrides)
            rows.append({"method": label, "setting": "held-out", "domain": target, "seed": seed, **scores(res.test),
                         "best_epoch": res.best_epoch, "seconds": round(res.seconds, 1)})
        print(f"  {label}: {rows[-1]['seconds']} s per run", flush=True)
    for label in IN_DOMAIN:
        options, overrides, _ = METHODS[label]
        model, res = train(data, seed, p.threads, options, overrides)
        for i, target in enumerate(names):
            ref = in_domain(data, target)
            m = evaluate(model, ref.test, ref.spec)
            rows.append({"method": label, "setting": "in-domain", "domain": target, "seed": seed, **scores(m),
                         "best_epoch": res.best_epoch, "seconds": round(res.seconds, 1)})
    return rows


if __name__ == "__main__":
    raise SystemExit(run_study(__file__, __doc__, rows_for_seed, recipe="MIDG's synth recipe"))
