"""Chapter 3's models over three training seeds, on the demo profile (about 10 minutes on 2 cores).

    python chapters/studies/03_dashfusion_seeds.py            # writes 03_dashfusion_seeds.csv beside it

The chapter trains every model once (seed 0) live; this study repeats the same runs
with seeds 0, 1 and 2 and adds two variants: the paper's temporal alignment (without
the time codes of the synth preset) and a trainable encoder layer over the frozen text
features (``text_layers=1``, a stand-in for fine-tuning the language model). One row
per (model, seed): test metrics, accuracy on the sarcastic and deadpan clips, how
spread out the temporal-alignment attention is, and the training time. The CSV starts
with a comment line saying when, where and with what it ran.
"""
from __future__ import annotations

import sys

import numpy as np

from msa_lib import metrics as M
from msa_lib.data.batch import make_batch
from msa_lib.models import build
from msa_lib.models.dashfusion import alignment_entropy
from msa_lib.profiles import seed_everything
from msa_lib.train import TrainConfig, fit, predict

from _runner import run_study

DASH = dict(preset="synth")
VARIANTS = {  # label -> (registered model, options); the first five are the chapter's live runs
    "early_fusion": ("early_fusion", dict(d_model=32)),
    "dashfusion": ("dashfusion", DASH),
    "w/o temporal alignment": ("dashfusion", {**DASH, "use_temporal_alignment": False}),
    "w/o contrastive": ("dashfusion", {**DASH, "use_contrastive": False}),
    "flat bottleneck": ("dashfusion", {**DASH, "hierarchical": False}),
    "paper's alignment (no time codes)": ("dashfusion", {**DASH, "align_time_codes": 0.0}),
    "with a text layer": ("dashfusion", {**DASH, "text_layers": 1}),
}


def run(label: str, seed: int, data, epochs: int, threads: int) -> dict:
    name, kw = VARIANTS[label]
    seed_everything(seed, threads=threads)
    model = build(name, data.spec, **kw)
    res = fit(model, data, TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, seed=seed))
    pred, y, _ = predict(model, data.test, data.spec)
    kind = np.asarray(data.test.extra["kind"])
    row = {"model": label, "seed": seed, "best_epoch": res.best_epoch, "seconds": round(res.seconds, 1)}
    row.update({k: round(float(v), 4) for k, v in res.test.items() if k != "loss"})
    for k in ("sarcastic", "deadpan"):  # Non0_acc_2 on the clips of one kind
        row[f"{k}_acc2"] = round(float(M.mosi_metrics(pred[kind == k], y[kind == k])["Non0_acc_2"]), 4)
    if name == "dashfusion" and kw.get("use_temporal_alignment", True):
        ent = alignment_entropy(model, make_batch(data.test, np.arange(min(128, len(data.test)))))
        row.update({f"ta_entropy_{m}": round(v, 3) for m, v in ent.items()})
    return row


def rows_for_seed(seed: int, data, p, args) -> list[dict]:
    assert M.PRIMARY_KEYS[data.spec.metric_set] == "Non0_acc_2"
    rows = []
    for label in args.models:
        rows.append(run(label, seed, data, p.epochs, p.threads))
        print(f"seed {seed} {label:>34}: Non0_acc_2 {rows[-1]['Non0_acc_2']:.4f}", flush=True)
    return rows


def models_option(ap) -> None:
    ap.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="MODEL")


if __name__ == "__main__":
    sys.exit(run_study(__file__, __doc__, rows_for_seed, add_arguments=models_option))
