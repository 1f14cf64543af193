"""What every model shares: the output object, the base class and the registry.

A model is an ``nn.Module`` whose ``forward(batch)`` returns a :class:`ModelOutput`
and whose ``loss(batch, out)`` returns a dict of named loss terms with a ``total``.
The trainer knows nothing else about it. Methods that need something at the start
of an epoch (e.g. a retrieval index) or a training-only corruption of the batch
override :meth:`MSAModel.on_epoch_start` / :meth:`MSAModel.train_batch`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batch import Batch
from ..data.spec import DatasetSpec

_REGISTRY: dict[str, tuple[type, type]] = {}


@dataclass
class ModelOutput:
    """pred: (B,) sentiment scores; aux: whatever the method exposes for teaching
    (attention maps, gates, unimodal predictions, latents)."""

    pred: torch.Tensor
    aux: dict = field(default_factory=dict)


class MSAModel(nn.Module):
    """Base class: keeps the dataset spec and config, provides the default loss."""

    def __init__(self, spec: DatasetSpec, cfg):
        super().__init__()
        self.spec, self.cfg = spec, cfg

    def forward(self, batch: Batch) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def regression_loss(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        kind = getattr(self.cfg, "loss", "l1")
        return F.l1_loss(pred, label) if kind == "l1" else F.mse_loss(pred, label)

    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, torch.Tensor]:
        task = self.regression_loss(out.pred, batch.label)
        return {"task": task, "total": task}

    def train_batch(self, batch: Batch, epoch: int, seed: int) -> Batch:
        """Training-time corruption of a clean batch. Default: the epoch's modality keep matrix if the
        config asks for one (``train_missing_rate`` / ``train_missing_rates``), then whole-modality
        dropout if configured (``modality_dropout``)."""
        keep = getattr(self, "_train_keep", None)
        if keep is not None:
            from ..missing import apply_keep_matrix
            batch = apply_keep_matrix(batch, keep)
        p = getattr(self.cfg, "modality_dropout", 0.0)
        if p > 0:
            from ..missing import modality_dropout
            batch = modality_dropout(batch, p, seed=seed, epoch=epoch)
        return batch

    def on_epoch_start(self, epoch: int, train_split, device, seed: int = 0) -> None:
        """Called by the trainer before each training epoch with the run's seed. Default: draw the
        epoch's modality keep matrix over the training split when the config sets a missing rate
        (the GCNet/HME protocol: one MR for every sample, or each sample's MR from a list)."""
        rate = getattr(self.cfg, "train_missing_rate", 0.0)
        rates = tuple(getattr(self.cfg, "train_missing_rates", ()))
        self._train_keep = None
        if rate or rates:
            from ..missing import train_keep_matrix
            keep = train_keep_matrix(len(train_split), rate, rates, seed, epoch)
            self._train_keep = None if keep.all() else keep

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Decay matrices, not biases, norms, embeddings of size 1-D (nanoGPT's rule)."""
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def prepare(self, data, cache_dir=None) -> None:
        """Called once before training with the whole dataset (MMSLF writes and encodes its prompts
        here). Default: nothing."""

    def stages(self) -> list:
        """The training stages, in order (``msa_lib.train.fit_stages``). Default: one, unnamed."""
        return [None]

    def set_stage(self, stage) -> None:
        """Switch to a training stage (what trains, what the forward computes). Default: nothing."""

    def representation_module(self) -> nn.Module | None:
        """The module whose *input* is the sample's final representation (flattened to (B, d) by
        ``msa_lib.dg``, which reads it for CORAL and the domain-adversarial head). Default:
        ``self.head``; a model without one overrides this (or returns None: no representation)."""
        return getattr(self, "head", None)

    def n_params(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def inference_params(self) -> int:
        """Parameters the deployed model uses to predict (all of them, unless a model keeps
        training-only parts, like MMSLF's teacher)."""
        return self.n_params(trainable_only=False)


def register(name: str, config_cls: type) -> Callable[[type], type]:
    """Class decorator: make ``build(name, spec, **cfg)`` construct this model."""
    def wrap(cls):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = (cls, config_cls)
        cls.registry_name = name
        return cls
    return wrap


def available() -> list[str]:
    return sorted(_REGISTRY)


def make_config(name: str, **cfg):
    """The config dataclass of model ``name`` with ``cfg`` overrides (a preset via ``preset=``)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(available())}")
    _, config_cls = _REGISTRY[name]
    preset = cfg.pop("preset", None)
    base = config_cls.preset(preset) if preset else config_cls()
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise TypeError(f"model {name!r} has no option(s) {unknown}; options: {sorted(known)}")
    return dataclasses.replace(base, **cfg)


def build(name: str, spec: DatasetSpec, **cfg) -> MSAModel:
    """Build model ``name`` for a dataset ``spec``; keyword arguments override its config."""
    cls, _ = _REGISTRY.get(name, (None, None))
    config = make_config(name, **cfg)
    return cls(spec, config)
