"""One training loop for every model in ``msa_lib``.

``fit`` trains with AdamW, a warm-up + decay schedule and gradient clipping, selects
the best epoch on the **validation** split only, optionally checkpoints every epoch
(and resumes), and finally reports the test metrics of the selected weights.
``evaluate`` and ``robustness_sweep`` score a model, optionally under a missing-data
protocol. The loop knows nothing method-specific: models speak through
``forward``, ``loss``, ``train_batch`` and ``on_epoch_start`` (see models/base.py).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from . import metrics as M
from .data.batch import Batch, Split, iterate, make_batch
from .dg import Objective
from .io import atomic_path
from .data.spec import DatasetSpec
from .missing import PATTERNS, apply_keep_matrix, apply_pattern, modality_keep_matrix, random_missing
from .profiles import seed_everything


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"       # "cosine", "linear" (warm-up then linear decay) or "constant"
    warmup: float = 0.1            # fraction of all steps (or epochs) spent warming up
    schedule_unit: str = "step"    # "step": the lr changes every step; "epoch": once per epoch, the
    #                                warm-up starting from lr 0 in the first epoch (LNLN's code)
    grad_clip: float | None = 1.0  # max gradient norm (None: no clipping)
    clip_mode: str = "norm"        # "norm" (the global norm) or "value" (each entry to [-clip, clip]; HME's code)
    reset_optimizer: bool = False  # a fresh optimizer (Adam moments zeroed) every epoch (HME's code)
    seed: int = 0
    deterministic: bool = False    # ask torch for deterministic kernels
    select_on: str = "loss"        # "loss" (validation loss, MMSA's default), a metric key, or "last"
    #                                (no selection: the last epoch's weights, CyIN's code)
    select_from: int = 0           # epochs before this one (0-based) are never selected (DashFusion: 1)
    patience: int | None = None    # stop after this many epochs without improvement
    amp: bool = False              # bfloat16 autocast on CUDA (opt-in; the official runs are fp32; CPU: ignored)
    progress: bool = False         # tqdm progress bar over epochs
    threads: int | None = None     # torch CPU threads
    eval_batch_size: int = 256
    dg: str = "erm"                # domain-generalization objective (msa_lib.dg): "erm", "irm", "coral",
    #                                "adversarial" or "mixup"
    dg_weight: float | None = None # weight of its penalty (None: msa_lib.dg.DEFAULT_WEIGHTS)
    dg_alpha: float = 0.2          # Mixup's Beta(alpha, alpha)


@dataclass
class TrainResult:
    history: pd.DataFrame          # one row per epoch: train terms, valid loss/metrics, lr, seconds
    best_epoch: int
    valid: dict                    # validation metrics of the selected epoch
    test: dict                     # test metrics of the selected weights
    seconds: float
    config: dict = field(default_factory=dict)


def lr_factor(step: int, total: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    raise ValueError(f"unknown schedule {schedule!r}; use 'cosine', 'linear' or 'constant'")


def epoch_lr_factor(epoch: int, epochs: int, warmup_epochs: int, schedule: str) -> float:
    """Multiplier of the base learning rate in ``epoch`` (0-based) when the lr changes once per epoch.

    Warm-up from 0: epoch e <= W trains with e / W (epoch 0 at lr 0, as LNLN's code, and
    epoch W at the peak); then ``schedule`` over the remaining epochs, from its peak.
    """
    if warmup_epochs > 0 and epoch <= warmup_epochs:
        return epoch / warmup_epochs
    return lr_factor(epoch - warmup_epochs - 1, epochs - warmup_epochs, 0, schedule)


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def predict(model, split: Split, spec: DatasetSpec, protocol: Callable[[Batch], Batch] | None = None,
            batch_size: int = 256, device=None, keep_aux: bool = False):
    """Predictions (N,) for ``split`` (optionally corrupted by ``protocol``), labels (N,), losses.

    With ``keep_aux`` also returns the list of per-batch ``out.aux`` dicts.
    """
    device = torch.device(device) if device else next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds, labels, losses, auxes = [], [], [], []
    for batch in iterate(split, batch_size):
        if protocol is not None:
            batch = protocol(batch)
        batch = batch.to(device)
        with torch.no_grad():
            out = model(batch)
        preds.append(out.pred.float().cpu())
        labels.append(batch.label.float().cpu())
        losses.append(float(model.regression_loss(out.pred.float(), batch.label)) * len(batch))
        if keep_aux:
            auxes.append(out.aux)
    model.train(was_training)
    pred, label = torch.cat(preds).numpy(), torch.cat(labels).numpy()
    result = (pred, label, sum(losses) / max(1, len(pred)))
    return result + (auxes,) if keep_aux else result


def evaluate(model, split: Split, spec: DatasetSpec, protocol=None, batch_size: int = 256, device=None) -> dict:
    """The metric set of ``spec`` (MOSI or SIMS, on the native label scale: ``spec.score_scale``)
    plus ``loss`` (on the training scale) on ``split``."""
    pred, label, loss = predict(model, split, spec, protocol, batch_size, device)
    out = M.compute(spec.metric_set, pred * spec.score_scale, label * spec.score_scale)
    out["loss"] = round(loss, 4)
    return out


def _better(score: float, best: float | None, select_on: str) -> bool:
    if best is None:
        return True
    return score < best if select_on in M.LOWER_IS_BETTER else score > best


def _save_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def fit(model, data, cfg: TrainConfig | None = None, device=None, checkpoint_dir=None,
        resume: bool = False, valid_protocol=None, **overrides) -> TrainResult:
    """Train ``model`` on ``data.train``, select on ``data.valid``, report ``data.test``.

    data: an MMSAData (``.spec``, ``.train``, ``.valid``, ``.test``).
    checkpoint_dir: if given, ``last.pt`` (everything needed to resume) is written
    atomically after every epoch and ``best.pt`` (weights of the selected epoch).
    valid_protocol: optional corruption applied to validation batches (e.g. a fixed
    missing rate), still on the validation split -- never the test split.
    """
    cfg = cfg or TrainConfig()
    if overrides:
        cfg = TrainConfig(**{**asdict(cfg), **overrides})
    if cfg.select_from >= cfg.epochs:
        raise ValueError(f"select_from={cfg.select_from} leaves no selectable epoch in {cfg.epochs} epochs")
    device = torch.device(device) if device else next(model.parameters()).device
    seed_everything(cfg.seed, cfg.deterministic, cfg.threads)
    model.to(device)
    if cfg.clip_mode not in ("norm", "value"):
        raise ValueError(f"clip_mode must be 'norm' or 'value', got {cfg.clip_mode!r}")
    objective = Objective(cfg.dg, cfg.dg_weight, cfg.dg_alpha)
    if objective.needs_representation:                 # hook the head's input (the adversary: sized on 2 clips)
        objective.attach(model, data.spec.n_domains, make_batch(data.train, np.arange(min(2, len(data.train)))).to(device))
    groups = lambda: model.param_groups(cfg.weight_decay) + objective.param_groups(cfg.weight_decay)  # noqa: E731
    optimizer = torch.optim.AdamW(groups(), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule_unit == "step":
        warm = int(cfg.warmup * total)
        factor = lambda s: lr_factor(s, total, warm, cfg.schedule)  # noqa: E731
    elif cfg.schedule_unit == "epoch":
        warm = round(cfg.warmup * cfg.epochs)
        factor = lambda s: epoch_lr_factor(s // steps_per_epoch, cfg.epochs, warm, cfg.schedule)  # noqa: E731
    else:
        raise ValueError(f"schedule_unit must be 'step' or 'epoch', got {cfg.schedule_unit!r}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    start_epoch, best, best_state, best_epoch, history, wait = 0, None, None, -1, [], 0

    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if resume and ckpt is not None and (ckpt / "last.pt").exists():
        state = torch.load(ckpt / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        if "objective" in state:
            objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best, best_epoch, history = state["epoch"] + 1, state["best"], state["best_epoch"], state["history"]
        best_state, wait = state["best_state"], state["wait"]

    t0 = time.perf_counter()
    epochs = range(start_epoch, cfg.epochs)
    if cfg.progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc=type(model).__name__, leave=False)
    for epoch in epochs:
        t_epoch = time.perf_counter()
        model.on_epoch_start(epoch, data.train, device, seed=cfg.seed)
        if cfg.reset_optimizer and epoch > start_epoch:     # new moments; the schedule keeps its place
            optimizer = torch.optim.AdamW(groups(), lr=cfg.lr)
            offset = epoch * steps_per_epoch
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s, o=offset: factor(s + o))
        model.train()
        sums, n_seen = {}, 0
        for batch in iterate(data.train, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch):
            batch = objective.transform(model.train_batch(batch, epoch, cfg.seed), epoch, cfg.seed).to(device)
            with _autocast(device, cfg.amp):
                out = model(batch)
                terms = model.loss(batch, out)
                for name, value in objective.terms(model, batch, out).items():
                    terms[name] = value
                    terms["total"] = terms["total"] + objective.weight * value
            if not torch.isfinite(terms["total"]):
                raise FloatingPointError(f"loss became {terms['total'].item()} at epoch {epoch}; "
                                         f"try a lower learning rate (lr={cfg.lr}) or gradient clipping")
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            if cfg.grad_clip and cfg.clip_mode == "value":
                torch.nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip)
            elif cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(batch)
            n_seen += len(batch)
        valid = evaluate(model, data.valid, data.spec, valid_protocol, cfg.eval_batch_size, device)
        row = {"epoch": epoch, **{f"train_{k}": v / n_seen for k, v in sums.items()},
               **{f"valid_{k}": v for k, v in valid.items()},
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t_epoch}
        history.append(row)
        score = float(epoch) if cfg.select_on == "last" else valid.get(cfg.select_on)
        if score is None:
            raise KeyError(f"select_on={cfg.select_on!r} is not a validation metric; have {sorted(valid)}")
        if epoch >= cfg.select_from and _better(score, best, cfg.select_on):
            best, best_epoch, wait = score, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if ckpt is not None:
                _save_atomic({"model": best_state, "epoch": epoch, "config": _plain(model.cfg),
                              "spec": data.spec.to_dict(), "model_name": getattr(model, "registry_name", "")},
                             ckpt / "best.pt")
        elif epoch >= cfg.select_from:
            wait += 1
        if ckpt is not None:
            _save_atomic({"model": model.state_dict(), "objective": objective.state_dict(),
                          "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                          "epoch": epoch, "best": best, "best_epoch": best_epoch, "history": history,
                          "best_state": best_state, "wait": wait}, ckpt / "last.pt")
        if cfg.patience is not None and wait >= cfg.patience:
            break

    objective.detach()
    model.load_state_dict(best_state)
    hist = pd.DataFrame(history)
    valid_best = {k[len("valid_"):]: v for k, v in history[best_epoch - history[0]["epoch"]].items()
                  if k.startswith("valid_")} if history else {}
    test = evaluate(model, data.test, data.spec, None, cfg.eval_batch_size, device)
    return TrainResult(hist, best_epoch, valid_best, test, time.perf_counter() - t0, asdict(cfg))


def fit_stages(model, data, cfg: TrainConfig | None = None, device=None, checkpoint_dir=None,
               resume: bool = False, valid_protocol=None) -> dict:
    """Train ``model`` stage by stage (``model.stages()``; most models have one) -> {stage: TrainResult}.

    Each stage trains with ``cfg`` when given, else with the model's own recipe for it
    (``model.stage_config(stage)``, or ``model.cfg.train_config()`` for a single stage). With a
    ``checkpoint_dir`` the last stage writes there and earlier ones into a subfolder named after
    the stage, so ``best.pt`` in the folder is the model that is deployed."""
    stages = model.stages()
    results = {}
    for stage in stages:
        model.set_stage(stage)
        if cfg is not None:
            own = cfg
        elif stage is not None:
            own = model.stage_config(stage)
        else:
            own = model.cfg.train_config() if hasattr(model.cfg, "train_config") else TrainConfig()
        folder = None
        if checkpoint_dir is not None:
            folder = Path(checkpoint_dir) if stage == stages[-1] else Path(checkpoint_dir) / str(stage)
        results[stage] = fit(model, data, own, device=device, checkpoint_dir=folder, resume=resume,
                             valid_protocol=valid_protocol)
    return results


def _plain(cfg) -> dict:
    """A model config dataclass as a dict of plain values (safe for weights_only loading)."""
    scalar = (int, float, str, bool, type(None))
    out = {}
    for k, v in asdict(cfg).items():
        if isinstance(v, scalar):
            out[k] = v
        elif isinstance(v, (tuple, list)) and all(isinstance(e, scalar) for e in v):
            out[k] = list(v)                                       # e.g. CyIN's translator widths
    return out


def robustness_sweep(model, split: Split, spec: DatasetSpec, protocol: str = "random", rates=None,
                     patterns=PATTERNS, seed: int = 0, text_fill: str = "zero", batch_size: int = 256,
                     device=None) -> pd.DataFrame:
    """Evaluate ``model`` on ``split`` under a missing-data protocol.

    protocol "random": every element of every modality missing with rate r, for r in
    ``rates`` (default 0.0, 0.1, ..., 0.9; LNLN's protocol); "pattern": each of the
    seven fixed modality subsets; "modality": whole modalities missing per sample with
    overall rate MR in ``rates`` (default 0.0, 0.1, ..., 0.7; GCNet's generator, used by
    HME and CyIN). Returns one row per rate/pattern with all metrics.
    """
    rows = []
    unk = spec.unk_vector if text_fill == "unk" else None
    if protocol == "random":
        rates = [round(0.1 * i, 1) for i in range(10)] if rates is None else rates
        for r in rates:
            m = evaluate(model, split, spec, lambda b, r=r: random_missing(b, r, seed=seed, text_fill=text_fill,
                                                                        unk_vector=unk), batch_size, device)
            rows.append({"rate": r, **m})
    elif protocol == "pattern":
        for p in patterns:
            m = evaluate(model, split, spec, lambda b, p=p: apply_pattern(b, p, text_fill=text_fill, unk_vector=unk),
                         batch_size, device)
            rows.append({"pattern": p, **m})
    elif protocol == "modality":
        rates = [round(0.1 * i, 1) for i in range(8)] if rates is None else rates
        for r in rates:
            matrix = modality_keep_matrix(len(split), r, seed=seed)
            m = evaluate(model, split, spec, lambda b, k=matrix: apply_keep_matrix(b, k, text_fill=text_fill,
                                                                                unk_vector=unk), batch_size, device)
            rows.append({"rate": r, "effective_rate": float(1.0 - matrix.mean()), **m})
    else:
        raise ValueError(f"unknown protocol {protocol!r}; use 'random', 'pattern' or 'modality'")
    return pd.DataFrame(rows)


MR_RATES = tuple(round(0.1 * i, 1) for i in range(1, 8))    # the random protocol of GCNet, HME and CyIN


def three_protocols(model, split: Split, spec: DatasetSpec, rates=MR_RATES, mask_seeds=(0,), batch_size: int = 256,
                    device=None) -> pd.DataFrame:
    """CyIN's evaluation (its Table 1): the complete clips, each of the six fixed incomplete
    subsets, and whole modalities missing at each rate MR (one keep matrix per mask seed).
    One row per condition (and mask seed): protocol ("complete", "fixed", "random"),
    condition ("tav", "ta", ..., "MR 0.1", ...), mask_seed (-1 where no mask is drawn), all metrics."""
    rows = []
    for r in robustness_sweep(model, split, spec, "pattern", batch_size=batch_size, device=device).to_dict("records"):
        rows.append({"protocol": "complete" if r["pattern"] == "tav" else "fixed", "condition": r.pop("pattern"),
                     "mask_seed": -1, **r})
    for s in mask_seeds:
        sweep = robustness_sweep(model, split, spec, "modality", rates=list(rates), seed=s, batch_size=batch_size,
                                 device=device)
        for r in sweep.drop(columns="effective_rate").to_dict("records"):
            rows.append({"protocol": "random", "condition": f"MR {r.pop('rate'):.1f}", "mask_seed": s, **r})
    return pd.DataFrame(rows)


def protocol_means(table: pd.DataFrame, key: str) -> dict:
    """{"complete", "fixed" (mean of the six subsets), "random" (mean over rates and mask seeds)}
    of one metric in a ``three_protocols`` table: the three column groups of CyIN's Table 1."""
    return {p: float(table.loc[table.protocol == p, key].mean()) for p in ("complete", "fixed", "random")}


def clone_model(model):
    """A deep copy (e.g. to train ablations from the same initial weights)."""
    return copy.deepcopy(model)
