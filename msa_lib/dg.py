"""Domain-generalization objectives that any ``msa_lib`` model trains with.

A model trained by plain empirical risk minimisation (**ERM**) minimises its own loss on the
pooled source domains. The other objectives add one term to that loss (or change the batch),
computed from what every model already exposes: its prediction, the batch's ``domain`` ids,
and the input of its ``representation_module()`` (usually the regression head), read by a
forward pre-hook. So they are written once, here, not once per model; the trainer calls them
through ``TrainConfig.dg`` (see :func:`msa_lib.train.fit`).

* ``irm`` -- IRMv1 (Arjovsky et al., 2019): the squared gradient of each domain's risk with
  respect to a dummy scale ``w = 1`` on the prediction, averaged over the batch's domains. It
  is zero when the predictor is already optimal (cannot be improved by rescaling) in every
  domain at once.
* ``coral`` -- Deep CORAL (Sun & Saenko, 2016), multi-source as in DomainBed (Gulrajani & Lopez-Paz,
  2021): for every pair of source domains in the batch, the squared distance of the
  representations' means plus that of their covariance matrices.
* ``adversarial`` -- a domain classifier on the representation behind a gradient-reversal
  layer (DANN; Ganin & Lempitsky, 2015), the same reversal LNLN's discriminator uses
  (``msa_lib.layers.grad_reverse``): the classifier learns to tell the domains apart, the model
  learns to make that impossible.
* ``mixup`` -- inter-domain Mixup (Yan et al., 2020; DomainBed's "Mixup"): each clip is mixed
  with a clip of another domain, ``x = lam x_i + (1 - lam) x_j`` for the text, audio and vision
  features, ``lam ~ Beta(alpha, alpha)`` once per batch, and the regression labels are mixed the
  same way. Token ids cannot be averaged: a model that reads ids sees the dominant clip's words.

Penalties are computed on the domains present in the batch; a batch with one domain adds zero.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.batch import Batch
from .layers import grad_reverse

METHODS = ("erm", "irm", "coral", "adversarial", "mixup")
DEFAULT_WEIGHTS = {"erm": 0.0, "irm": 1.0, "coral": 1.0, "adversarial": 0.1, "mixup": 0.0}


# ---------------------------------------------------------------------------------- the penalties
def irm_penalty(pred: torch.Tensor, label: torch.Tensor, domain: torch.Tensor, risk) -> torch.Tensor:
    """IRMv1: mean over domains e of (d R_e(w * pred) / d w at w = 1)^2.   pred, label, domain: (B,)."""
    scale = torch.ones((), device=pred.device, requires_grad=True)
    penalties = []
    for e in torch.unique(domain):
        sel = domain == e
        grad, = torch.autograd.grad(risk(pred[sel] * scale, label[sel]), scale, create_graph=True)
        penalties.append(grad.pow(2))
    return torch.stack(penalties).mean()


def coral_penalty(features: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of domains (with >= 2 clips each) of ||mu_i - mu_j||^2 / d + ||C_i - C_j||_F^2 / d^2.

    features: (B, d); domain: (B,). Zero when every domain has the same mean and covariance."""
    groups = [features[domain == e] for e in torch.unique(domain)]
    groups = [g for g in groups if len(g) >= 2]
    if len(groups) < 2:
        return features.sum() * 0.0
    d = features.shape[1]
    means = [g.mean(0) for g in groups]                                           # (d,) each
    covs = [torch.cov(g.T) for g in groups]                                       # (d, d) each
    terms = [(means[i] - means[j]).pow(2).sum() / d + (covs[i] - covs[j]).pow(2).sum() / d ** 2
             for i in range(len(groups)) for j in range(i + 1, len(groups))]
    return torch.stack(terms).mean()


def mix_across_domains(batch: Batch, lam: float, generator: torch.Generator | None = None) -> Batch:
    """Each clip mixed with a partner from another domain (:func:`cross_domain_partners`):
    features, availability (union) and labels; ``lam`` weighs the clip itself."""
    idx = cross_domain_partners(batch.domain.cpu(), generator)

    def mix(b: Batch) -> Batch:
        blend = lambda x: lam * x + (1.0 - lam) * x[idx]  # noqa: E731
        union = lambda m: m | m[idx]  # noqa: E731
        labels = {k: blend(getattr(b, k)) for k in ("label_t", "label_a", "label_v") if getattr(b, k) is not None}
        ids = b.text_ids if b.text_ids is None or lam >= 0.5 else b.text_ids[idx]
        return b.replace(text=blend(b.text), audio=blend(b.audio), vision=blend(b.vision),
                         text_mask=union(b.text_mask), audio_mask=union(b.audio_mask),
                         vision_mask=union(b.vision_mask), text_avail=union(b.text_avail),
                         audio_avail=union(b.audio_avail), vision_avail=union(b.vision_avail),
                         label=blend(b.label), missing_rate=blend(b.missing_rate), text_ids=ids, **labels)

    out = mix(batch)
    return out.replace(clean=mix(batch.clean)) if batch.clean is not None else out


def cross_domain_partners(domain: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) domain ids -> partner (B,) long: a random permutation of the batch that pairs every
    clip with a clip of *another* domain wherever the counts allow it.

    The clips are shuffled, grouped by domain, and clip k of that order is paired with clip
    k + s (cyclically), s = the size of the largest domain: a shift at least as long as every
    group leaves every group, so all pairs cross domains when no domain holds more than half
    the batch (otherwise only the surplus of the largest stays in it). One domain: s = 1, a
    random pairing with another clip. Deterministic given ``generator`` (else the global RNG)."""
    dom = domain.detach().cpu()
    B = len(dom)
    if B == 0:
        return torch.zeros(0, dtype=torch.long, device=domain.device)
    shuffled = torch.randperm(B, generator=generator)
    order = shuffled[torch.argsort(dom[shuffled], stable=True)]                        # grouped, random within
    largest = int(torch.unique(dom, return_counts=True)[1].max())
    shift = largest if largest < B else 1
    partner = torch.empty(B, dtype=torch.long)
    partner[order] = order.roll(-shift)                                                # order[k] -> order[k + s]
    return partner.to(domain.device)


# ------------------------------------------------------------------------------ the objective
class Objective(nn.Module):
    """What ``fit`` calls around a model's own loss. ``method`` is one of :data:`METHODS`.

    attach(model, n_domains, sample) -- install the representation hook (and size the domain
        classifier from one forward of ``sample``);
    transform(batch, epoch, seed) -> Batch -- Mixup's batch (others: the batch unchanged);
    terms(model, batch, out) -> dict -- the named penalty (unweighted) to log and add.
    """

    def __init__(self, method: str = "erm", weight: float | None = None, alpha: float = 0.2):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown domain-generalization method {method!r}; choose one of {METHODS}")
        self.method = method
        self.weight = DEFAULT_WEIGHTS[method] if weight is None else float(weight)
        self.alpha = alpha
        self.classifier: nn.Module | None = None
        self._features: list[torch.Tensor] = []
        self._hooks: list = []
        self._calls = 0

    @property
    def needs_representation(self) -> bool:
        return self.method in ("coral", "adversarial")

    def attach(self, model, n_domains: int, sample: Batch | None = None) -> None:
        if not self.needs_representation:
            return
        module = model.representation_module()
        if module is None:
            raise ValueError(f"{type(model).__name__} exposes no single representation (representation_module() "
                             f"is None), which {self.method!r} needs; use 'irm' or 'mixup' with it")
        self._hooks = [model.register_forward_pre_hook(lambda *_: self._features.clear()),
                       module.register_forward_pre_hook(lambda _, inputs: self._features.append(inputs[0]))]
        if self.method == "adversarial" and self.classifier is None:
            if sample is None:
                raise ValueError("the adversarial objective needs a sample batch to size its domain classifier")
            was = model.training
            model.eval()
            with torch.no_grad():
                model(sample)
            model.train(was)
            width = self.representation().shape[1]
            self.classifier = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, n_domains))
            self.classifier.to(next(model.parameters()).device)

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks, self._features = [], []

    def representation(self) -> torch.Tensor:
        """(B, d): the first input the representation module saw in the last forward."""
        if not self._features:
            raise RuntimeError("no representation was captured: the model did not call its representation_module()")
        return self._features[0].flatten(1).float()

    def transform(self, batch: Batch, epoch: int, seed: int) -> Batch:
        if self.method != "mixup":
            return batch
        self._calls += 1
        rng = np.random.default_rng([seed, epoch, self._calls, 17])
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return mix_across_domains(batch, float(rng.beta(self.alpha, self.alpha)), generator)

    def terms(self, model, batch: Batch, out) -> dict[str, torch.Tensor]:
        if self.method == "irm":
            return {"irm": irm_penalty(out.pred.float(), batch.label.float(), batch.domain, model.regression_loss)}
        if self.method == "coral":
            return {"coral": coral_penalty(self.representation(), batch.domain)}
        if self.method == "adversarial":
            logits = self.classifier(grad_reverse(self.representation()))
            return {"adversarial": F.cross_entropy(logits, batch.domain)}
        return {}

    def param_groups(self, weight_decay: float) -> list[dict]:
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "weight_decay": weight_decay}] if params else []
