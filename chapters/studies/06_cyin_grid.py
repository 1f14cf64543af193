"""Chapter 6's CyIN variants over two training seeds, on the demo profile (about 20 minutes on 2 cores).

    python chapters/studies/06_cyin_grid.py            # writes 06_cyin_grid.csv beside it

The chapter trains one CyIN live (training seed 0); this study retrains it with the
settings the paper varies: beta in {2, 4, 8, 16, 32, 64} at gamma = 10 and gamma in
{1, 5, 10, 15, 20} at beta = 16 (the paper's Table 3), and the ablations of its Table 2
that the model has switches for (no token-level IB, intra-modal reconstruction only, no
label-level IB, no back-translation, no translated latents fed to the fusion in stage 2,
stage 1 only). Per (variant, seed) one row: the test accuracy on complete clips, the mean
over the six fixed subsets, the mean over MR 0.1 ... 0.7 (three mask seeds) and at
MR 0.7, and the selected epoch. Seed 0's "cyin" row repeats the chapter's run exactly
(the chapter checks it).
"""
from __future__ import annotations

import sys

from msa_lib import metrics as M
from msa_lib.models import build
from msa_lib.profiles import seed_everything
from msa_lib.train import fit, protocol_means, three_protocols

from _runner import run_study

MASK_SEEDS = (0, 1, 2)
VARIANTS = {
    "cyin": {},
    **{f"beta = {b:g}": {"beta": float(b)} for b in (2, 4, 8, 32, 64)},
    **{f"gamma = {g:g}": {"gamma": float(g)} for g in (1, 5, 15, 20)},
    "w/o token-level IB": {"token_ib": False},
    "w/o cyclic interaction": {"cyclic_ib": False},
    "w/o label-level IB": {"label_ib": False},
    "w/o back-translation": {"back_translation": False},
    "w/o translated latents in stage 2": {"stage2_substitution": False},
    "stage 1 only": {"stage_divide": 1.0},
}


def rows_for_seed(seed: int, data, p, args=None) -> list[dict]:
    key = M.PRIMARY_KEYS[data.spec.metric_set]
    rows = []
    for label, overrides in VARIANTS.items():
        seed_everything(seed, threads=p.threads)
        model = build("cyin", data.spec, preset="synth", **overrides)
        result = fit(model, data, model.cfg.train_config(seed=seed))
        table = three_protocols(model, data.test, data.spec, mask_seeds=MASK_SEEDS)
        means = protocol_means(table, key)
        mr07 = table.loc[table.condition == "MR 0.7", key].mean()
        rows.append({"variant": label, "seed": seed, "beta": model.cfg.beta, "gamma": model.cfg.gamma,
                     **{k: round(v, 4) for k, v in means.items()}, "mr07": round(float(mr07), 4),
                     "best_epoch": result.best_epoch})
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(run_study(__file__, __doc__, rows_for_seed, argv=argv if "--seeds" in argv else ["--seeds", "0", "1", *argv],
                       recipe="the synth preset's own recipe, 10 epochs"))
