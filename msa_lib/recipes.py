"""How the book trains each model on SynthMSA: one function for every registered method.

The chapters each train their method with its ``synth`` preset and recipe; comparisons across
chapters (the domain-shift table of chapter 8, the benchmark of chapter 9) need those same
recipes in one place:

* the baselines (``text_only``, ``early_fusion``, ``late_fusion``, ``tfn``, ``mult``): width
  ``BASELINE_WIDTH``, AdamW lr 2e-3, batch 64, ``BASELINE_EPOCHS`` epochs (chapter 2's recipe);
* DashFusion: its ``synth`` preset with the baselines' recipe (chapter 3);
* LNLN, HME, CyIN, MIDG: their ``synth`` preset and its own ``train_config()`` (chapters 4-6, 8);
* MMSLF: its ``synth`` preset, the hints written and encoded (``prepare``), then the teacher and
  the student, each with its stage recipe (chapter 7).

``train_synth(name, data, seed)`` builds, trains and returns (model, TrainResult of the deployed
stage); ``train_recipe`` does the same for any preset and device (the benchmark grid, chapter 9).
``dg`` adds a domain-generalization objective (``msa_lib.dg``) to any of them.
"""
from __future__ import annotations

import dataclasses

from .models import BASELINES, available, build
from .profiles import seed_everything
from .train import TrainConfig, fit

BASELINE_WIDTH = 32
BASELINE_EPOCHS = 8
BOOK_MODELS = ("text_only", "early_fusion", "late_fusion", "tfn", "mult", "dashfusion", "lnln", "hme", "cyin",
               "mmslf", "midg")       # reading order


def synth_model(name: str, spec, preset: str = "synth", **options):
    """The model as its chapter builds it (``preset``: "synth", or a paper preset for the models
    that have one; the baselines have none and keep the chapter-2 width); ``options`` override."""
    if name not in available():
        raise KeyError(f"unknown model {name!r}; available: {', '.join(available())}")
    if name in BASELINES or name in ("audio_only", "vision_only"):
        return build(name, spec, **{"d_model": BASELINE_WIDTH, **options})
    return build(name, spec, preset=preset, **options)


def synth_train_config(model, seed: int, **overrides) -> TrainConfig | None:
    """Its chapter's recipe as a TrainConfig; None for a model with stages (each has its own)."""
    if len(model.stages()) > 1:
        return None
    if hasattr(model.cfg, "train_config") and model.registry_name != "dashfusion":
        return model.cfg.train_config(seed=seed, **overrides)
    return TrainConfig(**{**dict(epochs=BASELINE_EPOCHS, batch_size=64, lr=2e-3, seed=seed), **overrides})


def train_recipe(name: str, data, seed: int = 0, preset: str = "synth", threads: int | None = 2, device=None,
                 cache_dir=None, **train_overrides):
    """Build ``name`` for ``data`` with ``preset``, train it with the book's recipe -> (model,
    TrainResult of the deployed stage). ``train_overrides`` change the TrainConfig of every stage
    (e.g. ``dg="coral"``, ``epochs=2``)."""
    seed_everything(seed, threads=threads)
    model = synth_model(name, data.spec, preset)
    model.prepare(data, cache_dir)
    cfg = synth_train_config(model, seed, threads=threads, **train_overrides)
    if cfg is not None:
        return model, fit(model, data, cfg, device=device)
    for stage in model.stages():                              # MMSLF: the teacher, then the student
        model.set_stage(stage)
        result = fit(model, data, dataclasses.replace(model.stage_config(stage, seed=seed), threads=threads,
                                                      **train_overrides), device=device)
    return model, result


def train_synth(name: str, data, seed: int = 0, threads: int | None = 2, cache_dir=None, **train_overrides):
    """``train_recipe`` with the ``synth`` preset, on the CPU or the default device."""
    return train_recipe(name, data, seed, "synth", threads, None, cache_dir, **train_overrides)
