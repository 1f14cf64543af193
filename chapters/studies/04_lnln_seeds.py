"""Chapter 4's comparison over three training seeds, on the demo profile (about ten minutes on 2 cores).

    python chapters/studies/04_lnln_seeds.py            # writes 04_lnln_seeds.csv beside it

The chapter trains every model once (training seed 0) live; this study repeats the same
runs with seeds 0, 1 and 2: LNLN, its two ablations (w/o DMC, w/o DMML), LNLN with the
official code's gradient-reversal placement (``grl_on_main_path=True``) and the baselines. Per (model, seed) one row: the test accuracy
under random missing data (mean over r = 0 ... 0.9 and two mask seeds, and at r = 0
and 0.9), under each of the seven fixed modality subsets, and, for the LNLN variants,
how the completeness estimate w follows the missing rate. The augmented baseline is,
per seed, the fusion model with the best mean accuracy over rates on the *validation*
split, retrained with LNLN's training corruption. Seed 0 repeats the chapter's runs
exactly (the chapter checks it).
"""
from __future__ import annotations

import functools
import sys

import numpy as np
import pandas as pd
import torch

from msa_lib import metrics as M
from msa_lib.missing import PATTERNS, random_missing
from msa_lib.models import build, make_config
from msa_lib.models.lnln import lnln_train_corruption
from msa_lib.profiles import seed_everything
from msa_lib.train import TrainConfig, fit, predict, robustness_sweep

from _runner import run_study

RATES = [round(0.1 * i, 1) for i in range(10)]
MASK_SEEDS = (0, 1)
WIDTH = 32                                      # the chapter's baseline width (demo profile)
BASELINES = ("text_only", "early_fusion", "tfn")
FUSION = ("early_fusion", "tfn")
LNLN_VARIANTS = {"lnln": {}, "lnln, official GRL placement": {"grl_on_main_path": True},
                 "lnln w/o DMC": {"use_dmc": False}, "lnln w/o DMML": {"use_dmml": False}}


def evaluate_row(model, label: str, seed: int, data, key: str, fill: str, unk) -> dict:
    te, spec = data.test, data.spec
    sweeps = pd.concat([robustness_sweep(model, te, spec, "random", rates=RATES, seed=s, text_fill=fill)
                        .assign(mask_seed=s) for s in MASK_SEEDS])
    by_rate = sweeps.groupby("rate")[key].mean()
    patterns = robustness_sweep(model, te, spec, "pattern", text_fill=fill).set_index("pattern")[key]
    row = {"model": label, "seed": seed, "mean_over_rates": by_rate.mean(), "r0": by_rate.loc[0.0],
           "r05": by_rate.loc[0.5], "r09": by_rate.loc[0.9],
           "mask_seed_spread": float(sweeps.groupby("mask_seed")[key].mean().agg(np.ptp)),
           **{f"pattern_{p}": patterns.loc[p] for p in PATTERNS}}
    if label.startswith("lnln") and "w/o DMC" not in label:
        w_mean = []
        for r in RATES:
            protocol = functools.partial(random_missing, rate=r, seed=0, text_fill=fill, unk_vector=unk)
            _, _, _, aux = predict(model, te, spec, protocol, keep_aux=True)
            w_mean.append(float(torch.cat([a["w"].cpu() for a in aux]).mean()))
        row.update({"w_r0": w_mean[0], "w_r09": w_mean[-1],
                    "w_corr_rate": float(np.corrcoef(w_mean, 1 - np.array(RATES))[0, 1]),
                    "w_range": float(max(w_mean) - min(w_mean))})
    return {k: round(float(v), 4) if isinstance(v, (float, np.floating)) else v for k, v in row.items()}


def rows_for_seed(seed: int, data, p, args=None) -> list[dict]:
    spec = data.spec
    key = M.PRIMARY_KEYS[spec.metric_set]
    fill = "unk" if spec.unk_vector is not None else "zero"
    unk = spec.unk_vector if fill == "unk" else None
    lcfg = make_config("lnln", preset="synth")
    train_lnln = lcfg.train_config(epochs=lcfg.epochs, seed=seed, batch_size=lcfg.batch_size)
    valid_r05 = functools.partial(random_missing, rate=0.5, seed=seed + 100, text_fill=fill, unk_vector=unk)
    train_base = TrainConfig(epochs=p.epochs, batch_size=64, lr=2e-3, seed=seed)
    rows, trained = [], {}
    for label, overrides in LNLN_VARIANTS.items():
        seed_everything(seed, threads=p.threads)
        model = build("lnln", spec, preset="synth", **overrides)
        fit(model, data, train_lnln, valid_protocol=valid_r05)
        rows.append(evaluate_row(model, label, seed, data, key, fill, unk))
    for name in BASELINES:
        seed_everything(seed, threads=p.threads)
        trained[name] = build(name, spec, d_model=WIDTH)
        fit(trained[name], data, train_base)
        rows.append(evaluate_row(trained[name], name, seed, data, key, fill, unk))
    valid_means = {n: robustness_sweep(trained[n], data.valid, spec, "random", rates=RATES, seed=seed,
                                       text_fill=fill)[key].mean() for n in FUSION}
    strongest = max(valid_means, key=valid_means.get)
    seed_everything(seed, threads=p.threads)
    aug = build(strongest, spec, d_model=WIDTH)
    aug.train_batch = functools.partial(lnln_train_corruption, spec=spec)
    fit(aug, data, TrainConfig(**{**vars(train_base), "epochs": lcfg.epochs}), valid_protocol=valid_r05)
    rows.append({**evaluate_row(aug, "augmented baseline", seed, data, key, fill, unk), "augmented_model": strongest})
    return rows


if __name__ == "__main__":
    sys.exit(run_study(__file__, __doc__, rows_for_seed))
