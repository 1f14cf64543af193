"""MIDG (reconstruction): Mixture of Invariant Experts with knowledge injection for domain
generalization in multimodal sentiment analysis.

Li, Luo and Hu, arXiv 2512.07430 (December 2025). **This file is a reconstruction, not a port.**
The authors released no code, and only the paper's abstract and the start of its introduction
are public. What follows from those (spec ``specs/midg.md``, section 1) is confirmed; everything
else is our choice (spec sections 3-5), and every such choice is a field of :class:`MIDGConfig`.

Confirmed:

* the task -- domain generalization: train on source domains, test on an unseen one, with
  CMU-MOSI, CMU-MOSEI and CH-SIMS as the domains;
* the two named components -- a **Mixture of Invariant Experts** (MoIE), which extracts
  domain-invariant features while modelling the synergy *between* modalities, and a
  **Cross-Modal Adapter**, which injects cross-modal knowledge into the unimodal representations;
* training on in-domain data plus **simulated out-of-domain data**, produced by an
  **information-entropy disentanglement** module.

Ours (spec sections 3-5): every width and layer; that the adapter's knowledge comes from the
other two modalities through attention; the gate, its entropy and how the out-of-domain view
is simulated; the router; every loss term and weight; the training recipe.

1. ``UnimodalBackbones`` ("general knowledge", spec 3.1) -- text through ``TextEncoder`` (a
   Linear over precomputed token features, or a frozen BERT); audio and vision through a
   Linear, sinusoidal positions and a small Transformer encoder: ``G_m`` (B, L_m, d).
2. ``CrossModalAdapter`` (3.2) -- each modality's bottleneck ``X_m = GELU(G_m W_down)`` queries
   the other two modalities' bottlenecks; ``H_m = G_m + alpha_m (X_m + C_m) W_up``, with
   ``W_up`` zero at initialisation, so the adapter starts as the identity.
3. Masked mean pooling over observed steps: ``h_m`` (B, d).
4. ``EntropyDisentangler`` (3.3) -- a gate splits ``h_m`` into an invariant part ``g * h`` and a
   domain-specific part ``(1 - g) * h``; the simulated out-of-domain view keeps the invariant
   part and takes the domain-specific part of a clip from another domain (``simulate``).
   The entropy of the gate is the "information entropy" of the name.
5. ``MixtureOfInvariantExperts`` (3.4) -- a router and E expert MLPs read ``[h_t; h_a; h_v]``
   (B, 3d) together, so their invariance is learned across modalities: ``z`` (B, d).
6. A head MLP regresses ``z`` to the score (3.5), on the dataset's label scale.

Loss (spec section 4), on a batch and its simulated view (training only):
``task + lambda_ood ood + lambda_inv (cons + route) + lambda_rex rex + lambda_ent ent + lambda_bal bal``
-- the task loss on both views, the consistency of ``z`` and of the router between them, the
variance of the task loss across environments (the batch's source domains and the simulated
view: V-REx), the gate's entropy and the experts' load balance.

The model only sees ``batch.domain`` through the loss and the pairing of the simulated view;
the domain-generalization *protocol* (leave-one-domain-out, single source, harmonised features
and label scales, spec section 2) is the data's business (``msa_lib.data.domains``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batch import Batch
from ..data.spec import DatasetSpec
from ..dg import cross_domain_partners
from ..layers import TextEncoder, masked_mean, sinusoidal_positions
from .base import ModelOutput, MSAModel, register

MODS = ("text", "audio", "vision")


@dataclass
class MIDGConfig:
    # --- widths (spec 3: d = 128) ---
    d_model: int = 128             # d: width of every modality after its backbone, and of z
    heads: int = 8                 # heads of the audio/vision Transformer encoders
    encoder_layers: int = 2        # depth of the audio/vision Transformer encoders
    ff_mult: int = 2               # their FFN width = ff_mult * d
    dropout: float = 0.1           # encoders, adapter attention, head
    # --- Cross-Modal Adapter (spec 3.2) ---
    adapter_dim: int = 32          # r: bottleneck width
    adapter_heads: int = 4         # heads of the cross-modal read (head width r / heads)
    adapter_init: str = "zero"     # "zero": W_up and its bias start at 0 (H_m = G_m at init); "torch": PyTorch's
    adapter_scale_init: float = 1.0  # alpha_m, one learnable scale per modality (spec: 1 with zero W_up, or 0.1)
    # --- entropy disentanglement and the simulated view (spec 3.3) ---
    disentangle: str = "gate"      # "gate": g = sigmoid(MLP(h)); "channel": the rho highest-entropy channels
    #                                of H_m (softmax over time) are domain-specific (a hard gate, no entropy term)
    channel_rho: float = 0.5       # "channel": fraction of channels called domain-specific
    ood_mix: str = "permute"       # "permute": the spec part of a clip from another domain; "mixstyle": mix
    #                                the spec part's mean/std with that clip's
    mix_alpha: float = 0.1         # "mixstyle": lambda ~ Beta(mix_alpha, mix_alpha)
    # --- Mixture of Invariant Experts (spec 3.4) ---
    n_experts: int = 4             # E (spec: sweep 2-8); 1 = one plain MLP, no router
    top_k: int | None = None       # None: dense soft routing; k: keep the k largest weights, renormalised
    router_temperature: float = 1.0  # T_r in softmax(W_r u / T_r)
    # --- head (spec 3.5) ---
    tanh_output: bool = False      # True: pred = c tanh(.), c = the largest |label| of spec.label_range
    # --- losses (spec 4) ---
    loss: str = "l1"               # task loss: "l1" (MMSA's convention) or "mse"
    lambda_ood: float = 1.0        # task loss on the simulated view
    lambda_inv: float = 0.1        # consistency 1 - cos(z, z~) plus router KL(pi || pi~)
    lambda_rex: float = 0.1        # V-REx: variance of the task loss across environments
    lambda_ent: float = 0.01       # binary entropy of the gate (drives a crisp split)
    lambda_bal: float = 0.01       # load balance E sum_e (mean pi_e)^2 - 1 (0 when balanced)
    # --- text ---
    text_encoder: str = "features"  # "features" (Linear over batch.text), "minilm" or a BERT name/path
    finetune_text: bool = False    # spec 3.1/5: the LM stays frozen when adapters are used
    # --- ablations (spec 6.2) ---
    use_adapter: bool = True       # False: H_m = G_m (no cross-modal knowledge); alpha reported as 0
    use_disentangle: bool = True   # False: no gate (ones), no simulated view, no ood/cons/route/ent terms
    use_moie: bool = True          # False: one plain MLP 3d -> d -> d instead of the mixture (no router)
    # --- the recipe (spec 5), read by train_config() (the model itself ignores these) ---
    lr: float = 1e-4               # AdamW lr of adapters, encoders, MoIE and head
    lr_text: float = 2e-5          # lr of a fine-tuned pretrained text encoder (param_groups)
    weight_decay: float = 1e-4
    batch_size: int = 32
    epochs: int = 30
    warmup: float = 0.1            # fraction of the steps in linear warm-up, then linear decay
    grad_clip: float | None = 1.0  # max global gradient norm

    @classmethod
    def preset(cls, name: str) -> "MIDGConfig":
        presets = {
            # the spec's values (sections 3-5; all reconstructed). The spec has no per-dataset value, so the
            # three are the same config under the target's name. Text: the harmonised 768-d features
            # (spec 2.3: one multilingual encoder for every domain, or SIMS cannot be read by the others)
            "mosi": cls(),
            "mosei": cls(),
            "sims": cls(),
            # SynthMSA on a CPU (not from the spec): narrow and shallow, a larger lr, 8 epochs
            "synth": cls(d_model=64, adapter_dim=16, heads=4, encoder_layers=1,
                         lr=1e-3, batch_size=32, epochs=8),
        }
        if name not in presets:
            raise KeyError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]

    def train_config(self, **overrides):
        """The recipe as a ``msa_lib.train.TrainConfig`` (overrides win): AdamW, linear warm-up then
        linear decay, gradient-norm clipping, selection on the (source) validation loss -- with the L1
        loss, the validation MAE on the training scale."""
        from ..train import TrainConfig
        kw = dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                  schedule="linear", warmup=self.warmup, grad_clip=self.grad_clip, select_on="loss")
        kw.update(overrides)
        return TrainConfig(**kw)


def unmask_empty_rows(keep: torch.Tensor) -> torch.Tensor:
    """(B, L) bool, True = may be attended -> the same, with rows that have no True made all True.
    Attention over no key is a softmax over nothing (NaN); such a row (a modality missing from
    the clip) reads its zero-feature positions instead, and the caller discards the result."""
    return keep | ~keep.any(dim=1, keepdim=True)


# ---------------------------------------------------------------------------------------------
# 1. Unimodal backbones: the "general knowledge" (spec 3.1)
# ---------------------------------------------------------------------------------------------
class UnimodalBackbones(nn.Module):
    """batch -> G: three (B, L_m, d) sequences, and the three (B, L_m) availability masks.

    Text: ``TextEncoder`` (its features are already contextual). Audio and vision: Linear
    D_m -> d, sinusoidal positions (ours: the spec names none), then a Transformer encoder
    that attends only to observed steps."""

    def __init__(self, spec: DatasetSpec, cfg: MIDGConfig):
        super().__init__()
        d, (dt, da, dv) = cfg.d_model, spec.dims
        self.text = TextEncoder(dt, d, cfg.text_encoder, cfg.finetune_text, spec.unk_token_id)
        self.proj = nn.ModuleDict({"audio": nn.Linear(da, d), "vision": nn.Linear(dv, d)})
        self.encoder = nn.ModuleDict({
            m: nn.TransformerEncoder(
                nn.TransformerEncoderLayer(d, cfg.heads, dim_feedforward=cfg.ff_mult * d, dropout=cfg.dropout,
                                           activation="gelu", batch_first=True),
                cfg.encoder_layers, enable_nested_tensor=False)
            for m in ("audio", "vision")})
        self.register_buffer("pos", sinusoidal_positions(max(spec.lengths) + 1, d), persistent=False)

    def forward(self, batch: Batch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        G = [self.text(batch.text, batch.text_mask, batch.text_ids)]                   # (B, Lt, d)
        for m in ("audio", "vision"):
            x = self.proj[m](batch.features(m)) + self.pos[: batch.features(m).shape[1]]  # (B, L, d)
            pad = ~unmask_empty_rows(batch.avail(m))                                   # True = ignore
            G.append(self.encoder[m](x, src_key_padding_mask=pad))                    # (B, L, d)
        return G, [batch.avail(m) for m in MODS]


# ---------------------------------------------------------------------------------------------
# 2. Cross-Modal Adapter: cross-modal knowledge injection (spec 3.2)
# ---------------------------------------------------------------------------------------------
class CrossModalAdapter(nn.Module):
    """H_m = G_m + alpha_m K_m for each modality m with sources n1, n2 (the other two):

        X_m = GELU(G_m W_down_m)                                   (B, L_m, r)
        C_m = MHA(query X_m, key = value = [X_n1; X_n2] in time)   (B, L_m, r)
        K_m = (X_m + C_m) W_up_m                                   (B, L_m, d)

    The sources' availability masks the keys; a clip with no observed source step gets
    ``C_m = 0``. With ``init="zero"`` W_up and its bias start at zero: K_m = 0 and H_m = G_m
    exactly, so training starts from the backbones' "general knowledge" (adapter practice,
    as LoRA's zero B). Only W_up receives a gradient in the first step; the rest follows."""

    def __init__(self, d: int, r: int, heads: int, dropout: float = 0.0, init: str = "zero",
                 scale_init: float = 1.0):
        super().__init__()
        self.down = nn.ModuleDict({m: nn.Linear(d, r) for m in MODS})
        self.read = nn.ModuleDict({m: nn.MultiheadAttention(r, heads, dropout=dropout, batch_first=True)
                                   for m in MODS})
        self.up = nn.ModuleDict({m: nn.Linear(r, d) for m in MODS})
        self.alpha = nn.Parameter(torch.full((len(MODS),), float(scale_init)))     # (3,)
        if init == "zero":
            for up in self.up.values():
                nn.init.zeros_(up.weight)
                nn.init.zeros_(up.bias)

    def forward(self, G: list[torch.Tensor], avail: list[torch.Tensor]) -> list[torch.Tensor]:
        """G, avail: three (B, L_m, d) sequences and their (B, L_m) masks -> three (B, L_m, d)."""
        X = [F.gelu(self.down[m](g)) for m, g in zip(MODS, G)]                         # 3 x (B, L_m, r)
        H = []
        for i, m in enumerate(MODS):
            src = [j for j in range(len(MODS)) if j != i]
            kv = torch.cat([X[j] for j in src], dim=1)                                 # (B, L_n1 + L_n2, r)
            keep = torch.cat([avail[j] for j in src], dim=1)                           # (B, L_n1 + L_n2)
            C, _ = self.read[m](X[i], kv, kv, key_padding_mask=~unmask_empty_rows(keep), need_weights=False)
            C = C * keep.any(dim=1)[:, None, None].to(C.dtype)                         # (B, L_m, r)
            K = self.up[m](X[i] + C)                                                   # (B, L_m, d)
            H.append(G[i] + self.alpha[i] * K)                                         # (B, L_m, d)
        return H


# ---------------------------------------------------------------------------------------------
# 3. Information-entropy disentanglement and the simulated out-of-domain view (spec 3.3)
# ---------------------------------------------------------------------------------------------
def binary_entropy(g: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean of -[g log g + (1 - g) log(1 - g)] over every entry of a gate in (0, 1), in nats:
    log 2 at g = 0.5 (undecided), 0 at g = 0 or 1 (a crisp split)."""
    g = g.clamp(eps, 1 - eps)
    return -(g * g.log() + (1 - g) * (1 - g).log()).mean()


def sample_beta(alpha: float, n: int, generator: torch.Generator | None = None, tries: int = 16) -> torch.Tensor:
    """n draws of Beta(alpha, alpha) (CPU) from uniforms alone, so a ``torch.Generator`` makes them
    reproducible (``torch.distributions.Beta`` takes none). Johnk's method: X = U^(1/a), Y = V^(1/a),
    accept when X + Y <= 1, return X / (X + Y); for a = 0.1 a try is accepted 99 % of the time."""
    u = torch.rand(n, tries, 2, generator=generator).clamp_min(1e-12)
    logs = u.log() / alpha                                                             # (n, tries, 2)
    accept = torch.logsumexp(logs, dim=-1) <= 0                                       # (n, tries)
    lam = torch.sigmoid(logs[..., 0] - logs[..., 1])                                   # X / (X + Y)
    first = accept.float().argmax(dim=1, keepdim=True)                                 # first accepted try
    return torch.where(accept.any(dim=1), lam.gather(1, first)[:, 0], torch.full((n,), 0.5))


class EntropyDisentangler(nn.Module):
    """Pooled vectors h (B, M, d) -> invariant part g * h, domain-specific part (1 - g) * h, gate g.

    mode "gate": g_m = sigmoid(MLP_m(h_m)), MLP d -> d/2 -> d, one per modality; the loss
    minimises the gate's ``binary_entropy`` so each channel is clearly one or the other.
    mode "channel" (the spec's alternative): a channel is domain-specific when its activation
    over the clip, softmax-normalised over observed steps of H_m, has high entropy (spread
    evenly over time, like a recording condition, rather than tied to moments): the ``rho``
    fraction with the highest entropy gets g = 0, the rest g = 1 (a hard gate, no parameters).

    ``simulate`` builds the out-of-domain view: mix "permute" takes the domain-specific part of
    a partner clip from another domain, "mixstyle" keeps the clip's own but with mean and std
    (over the channels of each modality's vector) mixed with the partner's, lambda ~
    Beta(alpha, alpha) per clip (MixStyle, Zhou et al., ICLR 2021, on a vector). Either way the
    invariant part passes through unchanged and the label is kept."""

    def __init__(self, d: int, mode: str = "gate", rho: float = 0.5, mix: str = "permute",
                 mix_alpha: float = 0.1, n_modalities: int = len(MODS)):
        super().__init__()
        if mode not in ("gate", "channel"):
            raise ValueError(f"disentangle mode must be 'gate' or 'channel', got {mode!r}")
        if mix not in ("permute", "mixstyle"):
            raise ValueError(f"ood_mix must be 'permute' or 'mixstyle', got {mix!r}")
        self.mode, self.rho, self.mix, self.mix_alpha = mode, rho, mix, mix_alpha
        self.gate = (nn.ModuleList(nn.Sequential(nn.Linear(d, d // 2), nn.GELU(), nn.Linear(d // 2, d))
                                   for _ in range(n_modalities)) if mode == "gate" else None)

    def channel_gate(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, d) sequence, (B, L) observed steps -> (B, d) hard gate, 0 on the domain-specific channels."""
        with torch.no_grad():
            logits = seq.masked_fill(~unmask_empty_rows(mask)[..., None], float("-inf"))
            p = logits.softmax(dim=1)                                                  # (B, L, d) over time
            entropy = -torch.xlogy(p, p).sum(dim=1)                                    # (B, d)
            g = torch.ones_like(entropy)
            k = round(self.rho * seq.shape[-1])
            if k:
                g.scatter_(1, entropy.topk(k, dim=1).indices, 0.0)
        return g

    def forward(self, h: torch.Tensor, seqs: list[torch.Tensor] | None = None,
                masks: list[torch.Tensor] | None = None):
        """h (B, M, d); seqs/masks: the M sequences (B, L_m, d) and masks (mode "channel" only)."""
        if self.mode == "gate":
            g = torch.stack([torch.sigmoid(mlp(h[:, i])) for i, mlp in enumerate(self.gate)], dim=1)  # (B, M, d)
        else:
            g = torch.stack([self.channel_gate(s, m) for s, m in zip(seqs, masks)], dim=1)         # (B, M, d)
        return g * h, (1 - g) * h, g

    def simulate(self, inv: torch.Tensor, spec: torch.Tensor, domain: torch.Tensor,
                 generator: torch.Generator | None = None, partner: torch.Tensor | None = None) -> torch.Tensor:
        """h~ = inv + Pi(spec) (B, M, d). ``partner`` (B,): whose domain-specific part each clip
        borrows (default: ``cross_domain_partners(domain, generator)``)."""
        if partner is None:
            partner = cross_domain_partners(domain, generator)
        partner = partner.to(spec.device)
        if self.mix == "permute":
            return inv + spec[partner]                                                 # (B, M, d)
        mu = spec.mean(dim=-1, keepdim=True).detach()                                  # (B, M, 1), as MixStyle
        sig = (spec.var(dim=-1, keepdim=True, unbiased=False) + 1e-6).sqrt().detach()  # (B, M, 1)
        lam = sample_beta(self.mix_alpha, len(spec), generator).to(spec)[:, None, None]  # (B, 1, 1)
        mu_mix = lam * mu + (1 - lam) * mu[partner]
        sig_mix = lam * sig + (1 - lam) * sig[partner]
        return inv + (spec - mu) / sig * sig_mix + mu_mix                              # (B, M, d)


# ---------------------------------------------------------------------------------------------
# 4. Mixture of Invariant Experts (spec 3.4)
# ---------------------------------------------------------------------------------------------
class MixtureOfInvariantExperts(nn.Module):
    """u (B, in_dim) -> z = sum_e pi_e(u) f_e(u) (B, d) and the router weights pi (B, E).

    Experts f_e(u) = W2 GELU(W1 u), in_dim -> d -> d; router pi = softmax(W_r u / T). With
    ``top_k`` only the k largest weights are kept and renormalised. One expert: a plain MLP, no
    router (pi = 1). What makes the experts "invariant" is the loss, not the layers: the same
    routing and the same z on a clip and its simulated out-of-domain view (``router_kl``, the
    consistency term), and balanced use of the experts (``load_balance``)."""

    def __init__(self, in_dim: int, d: int, n_experts: int = 4, top_k: int | None = None,
                 temperature: float = 1.0):
        super().__init__()
        if n_experts < 1:
            raise ValueError(f"n_experts must be at least 1, got {n_experts}")
        if top_k is not None and not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be in 1..{n_experts} (or None), got {top_k}")
        self.top_k, self.temperature = top_k, temperature
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(in_dim, d), nn.GELU(), nn.Linear(d, d))
                                     for _ in range(n_experts))
        self.router = nn.Linear(in_dim, n_experts) if n_experts > 1 else None

    def route(self, u: torch.Tensor) -> torch.Tensor:
        if self.router is None:
            return u.new_ones(u.shape[0], 1)                                           # (B, 1)
        pi = (self.router(u) / self.temperature).softmax(dim=-1)                       # (B, E)
        if self.top_k is not None and self.top_k < pi.shape[-1]:
            top = pi.topk(self.top_k, dim=-1)
            pi = torch.zeros_like(pi).scatter(-1, top.indices, top.values)            # k non-zeros
            pi = pi / pi.sum(dim=-1, keepdim=True)
        return pi

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pi = self.route(u)                                                             # (B, E)
        f = torch.stack([expert(u) for expert in self.experts], dim=1)                 # (B, E, d)
        return (pi[..., None] * f).sum(dim=1), pi                                      # (B, d), (B, E)


def load_balance(pi: torch.Tensor) -> torch.Tensor:
    """E sum_e (mean over the batch of pi_e)^2 - 1 for router weights (B, E): 0 when every expert
    gets the same share, E - 1 when one expert takes every clip (router collapse, spec 8.6)."""
    return pi.shape[-1] * pi.mean(dim=0).pow(2).sum() - 1


def router_kl(pi: torch.Tensor, pi_tilde: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KL(pi || pi~) summed over experts, averaged over the batch; (B, E) each. Zeros (top-k) count
    as 0 log 0 = 0; the clamp keeps the logarithm and its gradient finite."""
    return (pi * (pi.clamp_min(eps).log() - pi_tilde.clamp_min(eps).log())).sum(dim=-1).mean()


def vrex_penalty(risks: list[torch.Tensor]) -> torch.Tensor:
    """Variance (over environments, not unbiased) of a list of scalar risks; 0 for fewer than two."""
    if len(risks) < 2:
        return risks[0].new_zeros(()) if risks else torch.zeros(())
    r = torch.stack(risks)
    return (r - r.mean()).pow(2).mean()


# ---------------------------------------------------------------------------------------------
# 5. The model
# ---------------------------------------------------------------------------------------------
@register("midg", MIDGConfig)
class MIDG(MSAModel):
    """forward(batch) -> ModelOutput(pred (B,), aux). aux: h (B, 3, d) pooled modality vectors
    (after the adapter), z (B, d) the MoIE output (the head's input), router (B, E), gate
    (B, 3, d) (ones without disentanglement), alpha (3,) adapter scales (zeros without adapter).
    In training with disentanglement also the simulated view: h_ood (B, 3, d), partner (B,),
    z_ood (B, d), router_ood (B, E), pred_ood (B,)."""

    def __init__(self, spec: DatasetSpec, cfg: MIDGConfig):
        super().__init__(spec, cfg)
        if cfg.adapter_init not in ("zero", "torch"):
            raise ValueError(f"adapter_init must be 'zero' or 'torch', got {cfg.adapter_init!r}")
        d = cfg.d_model
        self.backbones = UnimodalBackbones(spec, cfg)
        self.adapter = (CrossModalAdapter(d, cfg.adapter_dim, cfg.adapter_heads, cfg.dropout, cfg.adapter_init,
                                          cfg.adapter_scale_init) if cfg.use_adapter else None)
        self.disentangler = (EntropyDisentangler(d, cfg.disentangle, cfg.channel_rho, cfg.ood_mix, cfg.mix_alpha)
                             if cfg.use_disentangle else None)
        self.moie = MixtureOfInvariantExperts(3 * d, d, cfg.n_experts if cfg.use_moie else 1,
                                              cfg.top_k if cfg.use_moie else None, cfg.router_temperature)
        self.head = nn.Sequential(nn.Linear(d, d // 2), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d // 2, 1))
        self.out_scale = max(abs(float(v)) for v in spec.label_range)

    def encode(self, batch: Batch):
        """Pooled h (B, 3, d), the sequences H after the adapter, and their availability masks."""
        G, avail = self.backbones(batch)
        H = self.adapter(G, avail) if self.adapter is not None else G
        h = torch.stack([masked_mean(x, m) for x, m in zip(H, avail)], dim=1)          # (B, 3, d)
        return h, H, avail

    def predict_from(self, h: torch.Tensor):
        """h (B, 3, d) -> pred (B,), z (B, d), router pi (B, E)."""
        z, pi = self.moie(h.flatten(1))                                                # u = [h_t; h_a; h_v]
        pred = self.head(z)[:, 0]                                                      # (B,)
        if self.cfg.tanh_output:
            pred = self.out_scale * torch.tanh(pred)
        return pred, z, pi

    def forward(self, batch: Batch) -> ModelOutput:
        h, H, avail = self.encode(batch)
        pred, z, pi = self.predict_from(h)        # first call of the head: msa_lib.dg reads z from it
        alpha = self.adapter.alpha if self.adapter is not None else h.new_zeros(len(MODS))
        aux = {"h": h, "z": z, "router": pi, "gate": torch.ones_like(h), "alpha": alpha}
        if self.disentangler is not None:
            inv, spec_part, g = self.disentangler(h, H, avail)                         # (B, 3, d) each
            aux["gate"] = g
            if self.training:
                partner = cross_domain_partners(batch.domain)
                h_ood = self.disentangler.simulate(inv, spec_part, batch.domain, partner=partner)
                pred_ood, z_ood, pi_ood = self.predict_from(h_ood)
                aux.update(h_ood=h_ood, partner=partner, pred_ood=pred_ood, z_ood=z_ood, router_ood=pi_ood)
        return ModelOutput(pred, aux)

    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, torch.Tensor]:
        """task, ood, cons, route, rex, ent, bal and total; a term that does not apply (evaluation
        mode, an ablation, one environment) is 0. V-REx environments: each source domain in the
        batch (its clips' task loss) and the simulated view (its task loss)."""
        cfg, aux, y = self.cfg, out.aux, batch.label
        task = self.regression_loss(out.pred, y)
        zero = task.new_zeros(())
        terms = {"task": task, "ood": zero, "cons": zero, "route": zero, "rex": zero, "ent": zero, "bal": zero}
        if self.training:
            domain = batch.domain.to(y.device)
            risks = [self.regression_loss(out.pred[domain == e], y[domain == e]) for e in torch.unique(domain)]
            if "pred_ood" in aux:
                terms["ood"] = self.regression_loss(aux["pred_ood"], y)
                terms["cons"] = (1 - F.cosine_similarity(aux["z"], aux["z_ood"], dim=-1)).mean()
                terms["route"] = router_kl(aux["router"], aux["router_ood"])
                risks.append(terms["ood"])
                if cfg.disentangle == "gate":
                    terms["ent"] = binary_entropy(aux["gate"])
            terms["rex"] = vrex_penalty(risks)
            terms["bal"] = load_balance(aux["router"])
        terms["total"] = (terms["task"] + cfg.lambda_ood * terms["ood"]
                          + cfg.lambda_inv * (terms["cons"] + terms["route"]) + cfg.lambda_rex * terms["rex"]
                          + cfg.lambda_ent * terms["ent"] + cfg.lambda_bal * terms["bal"])
        return terms

    def param_groups(self, weight_decay: float) -> list[dict]:
        """A fine-tuned pretrained text encoder trains at ``lr_text`` (spec 5: 2e-5), the rest at the
        trainer's lr (listed first, so the trainer logs that one); within each, the base rule
        (matrices decay). Frozen or no pretrained encoder: the base class's two groups."""
        lm = self.backbones.text.pretrained
        if lm is None or not any(p.requires_grad for p in lm.parameters()):
            return super().param_groups(weight_decay)
        lm_ids = {id(p) for p in lm.parameters()}
        groups = []
        for in_lm in (False, True):
            params = [p for p in self.parameters() if p.requires_grad and (id(p) in lm_ids) == in_lm]
            lr = {"lr": self.cfg.lr_text} if in_lm else {}
            groups += [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, **lr},
                       {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, **lr}]
        return groups
