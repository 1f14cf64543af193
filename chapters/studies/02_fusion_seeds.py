"""Chapter 2's models over three training seeds, on the demo profile (about five minutes on 2 cores).

    python chapters/studies/02_fusion_seeds.py            # writes 02_fusion_seeds.csv beside it

The chapter trains the three unimodal and the four fusion models once (training seed
0) live; this study repeats the same runs with seeds 0, 1 and 2. One row per (model,
seed): the test metrics on complete data, the accuracy on the sarcastic clips, the mean
accuracy under random missing data (r = 0 ... 0.9, mask seed 0) and the accuracy with
each of the seven fixed modality subsets. Seed 0 repeats the chapter's runs exactly
(the chapter checks it).
"""
from __future__ import annotations

import sys

import numpy as np

from msa_lib import metrics as M
from msa_lib.missing import PATTERNS
from msa_lib.models import build
from msa_lib.profiles import seed_everything
from msa_lib.train import TrainConfig, fit, predict, robustness_sweep

from _runner import run_study

MODELS = ["text_only", "audio_only", "vision_only", "early_fusion", "late_fusion", "tfn", "mult"]
WIDTH = 32                                      # the chapter's width (demo profile)
RATES = [round(0.1 * i, 1) for i in range(10)]


def run(name: str, seed: int, data, p) -> dict:
    spec = data.spec
    key = M.PRIMARY_KEYS[spec.metric_set]
    fill = "unk" if spec.unk_vector is not None else "zero"
    seed_everything(seed, threads=p.threads)
    model = build(name, spec, d_model=WIDTH)
    res = fit(model, data, TrainConfig(epochs=p.epochs, batch_size=64, lr=2e-3, seed=seed))
    pred, y, _ = predict(model, data.test, spec)
    kind = np.asarray(data.test.extra["kind"])
    row = {"model": name, "seed": seed, "best_epoch": res.best_epoch}
    row.update({k: float(v) for k, v in res.test.items() if k != "loss"})
    row["sarcastic_acc2"] = float(M.mosi_metrics(pred[kind == "sarcastic"], y[kind == "sarcastic"])["Non0_acc_2"])
    row["mean_over_rates"] = float(robustness_sweep(model, data.test, spec, "random", rates=RATES, seed=0,
                                                    text_fill=fill)[key].mean())
    patterns = robustness_sweep(model, data.test, spec, "pattern", text_fill=fill).set_index("pattern")[key]
    row.update({f"pattern_{p_}": float(patterns.loc[p_]) for p_ in PATTERNS})
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def rows_for_seed(seed: int, data, p, args) -> list[dict]:
    rows = []
    for name in MODELS:
        rows.append(run(name, seed, data, p))
        print(f"seed {seed} {name:>12}: Non0_acc_2 {rows[-1]['Non0_acc_2']:.4f}", flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(run_study(__file__, __doc__, rows_for_seed))
