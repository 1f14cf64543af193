"""HME: Hyper-Modality Enhancement for sentiment analysis with missing modalities.

Zhuang, Liu, Bai, Zhang, Li, Deng and Ren, NeurIPS 2025 (openreview.net/forum?id=mPOQZMBKaN).
Read beside the paper and the official code (github.com/YetZzzzzz/HME, read at 6f0c9a7),
whose behaviour this file follows unless a comment says otherwise.

HME never rebuilds a missing modality. It borrows evidence for it instead:

1. ``MulTEncoder`` -- each modality (zeroed where missing) is projected, read by a MulT-style
   transformer and max-pooled over time: ``H_m`` (B, d).
2. Modality enhancement -- ``retrieve``: for each sample, the mean ``H_m`` of the *other*
   samples whose cosine similarity is at least ``t_s`` (fallback: the mean of all samples
   that have modality m), then a small Perceiver with learnable latents (``Perceiver``):
   ``E_m``. A fourth Perceiver reads the sample's own three ``H_m``: ``E_S``.
3. Hyper-modality generation -- ``CrossBlock`` mixes ``E_m`` with the other two ``E``'s,
   then lets the shared ``E_S`` query the pair: ``R_m``.
4. ``VIB`` -- a variational information bottleneck compresses ``R_m`` into ``F_m`` with a
   per-dimension standard deviation ``sigma_m`` and an auxiliary prediction ``yhat_m``.
5. Uncertainty-aware fusion -- ``UncertaintyGate2`` mixes ``H_m`` and ``F_m`` with the
   enriched branch's logit scaled by the confidence ``zeta_m = clamp(1 / mean sigma_m, 0.2, 1)``;
   ``UncertaintyGate3`` weights the three ``F_m`` by a softmax over ``1 / mean sigma``.
6. A two-layer transformer over ``[S_L, S_A, S_V, S_H]`` and an MLP give the score.

Loss: ``L1(y_hat, y) + 0.8 * mean_m L1(yhat_m, y) + 0.01 * mean_m KL_m``.

Switches where the official code and this book differ (the paper presets set the code's value):

* ``retrieval`` -- "batch" (code): the pool is the current mini-batch, so a test prediction
  depends on which clips share its batch. "bank" (book default, not in the paper): a memory
  bank of training-set embeddings, filled during training; a prediction is then a function
  of the clip alone.
* ``availability`` -- "zero" (code): a pooled ``H_m`` whose entries sum to 0 counts as missing.
  After training an all-zero input no longer pools to zero, so the test stops firing and a
  missing sample retrieves other missing samples. "mask" (book default): the batch's
  availability mask says which samples have modality m.
* ``sample_at_eval`` -- the code samples the VIB noise at evaluation too (True); the book
  uses the mean at evaluation (False), so a prediction is deterministic.
* ``init`` -- "bert" (code: ``BertPreTrainedModel.init_weights`` reaches every Linear of the
  model, N(0, 0.02), zero biases); "torch" (book default): PyTorch's defaults.
* Paper vs code, code followed: kernel-1 projection (paper: a temporal convolution), max
  pooling (paper: average), one VIB MLP split into mean and std (paper: two MLPs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batch import Batch
from ..data.spec import DatasetSpec
from ..layers import TextEncoder
from ..layers.mult import MulTAttention, MulTLayer, padded_sinusoids
from .base import ModelOutput, MSAModel, register


@dataclass
class HMEConfig:
    # --- widths (official argparse defaults; the README's commands use d_model 192) ---
    d_model: int = 96              # d_l: width of everything after the projections
    heads: int = 16                # every attention block (head width d / 16)
    layers: int = 4                # MulT layers per modality (MOSI 4, MOSEI 2)
    latent_layers: int = 4         # Perceiver depth (MOSI 4, MOSEI 3)
    hyper_depth: int = 3           # blocks of each hyper-modality cross encoder
    num_latents: int = 5           # learnable latents ("prompts") per Perceiver
    ff_mult: int = 4               # MulT FFN and GEGLU hidden width = ff_mult * d
    head_ff: int = 2048            # FFN of the final nn.TransformerEncoderLayer (PyTorch's default)
    head_layers: int = 2
    # --- dropout (official values) ---
    attn_dropout: float = 0.5      # MulT attention weights (the code passes the text value to all three)
    relu_dropout: float = 0.3
    res_dropout: float = 0.3
    embed_dropout: float = 0.2
    gate_dropout: float = 0.3      # inside the two uncertainty gates
    out_dropout: float = 0.1       # final transformer and MLP
    # --- the method ---
    similarity_threshold: float = 0.6   # t_s
    conf_low: float = 0.2          # t_l: the confidence zeta is clamped to [t_l, t_u]
    conf_high: float = 1.0         # t_u
    sigma_shift: float = 5.0       # sigma = softplus(s - 5): about 0.0067 at initialisation
    aux_weight: float = 0.8        # weight of the three VIB heads' L1
    kl_weight: float = 0.01        # weight of the mean KL
    loss: str = "l1"
    text_encoder: str = "features"  # "features" (Linear over batch.text) or a BERT name/path
    finetune_text: bool = True     # the official run fine-tunes BERT with the same lr
    # --- where code and book differ (module docstring) ---
    retrieval: str = "bank"        # "batch" (code) or "bank"
    availability: str = "mask"     # "zero" (code) or "mask"
    sample_at_eval: bool = False   # code: True
    init: str = "torch"            # "bert" (code) or "torch"
    # --- ablations (paper Table 4 style) ---
    use_retrieval: bool = True     # False: each Perceiver reads the sample's own H_m
    use_vib: bool = True           # False: F_m = R_m, no sigma (confidence 1), no KL, no aux heads
    use_uncertainty: bool = True   # False: the gates ignore sigma
    # --- training-time missing modalities (spec section 3; applied by MSAModel.train_batch) ---
    train_missing_rate: float = 0.0     # MR of the keep matrix drawn every epoch (one model per MR)
    train_missing_rates: tuple = ()     # non-empty: each sample draws its MR from these every epoch
    # --- the official recipe (build a TrainConfig with train_config()) ---
    lr: float = 2e-5               # one lr for BERT and everything else
    weight_decay: float = 1e-4     # not on biases and BERT's LayerNorm weights
    batch_size: int = 256
    eval_batch_size: int = 128     # matters: with in-batch retrieval the pool is the eval batch
    epochs: int = 100
    patience: int | None = 10
    grad_clip: float | None = 0.8
    clip_mode: str = "value"       # the code clips each gradient entry to [-0.8, 0.8]
    reset_optimizer: bool = True   # the code builds a new AdamW every epoch (moments reset)
    recipe: str = "book"

    OFFICIAL = dict(recipe="official", retrieval="batch", availability="zero", sample_at_eval=True,
                    init="bert", finetune_text=True, lr=2e-5, weight_decay=1e-4, batch_size=256,
                    eval_batch_size=128, epochs=100, patience=10, grad_clip=0.8, clip_mode="value",
                    reset_optimizer=True)

    @classmethod
    def preset(cls, name: str) -> "HMEConfig":
        presets = {
            # the README's commands (d 192); the paper's "about 118 M parameters" is d 96 (the *_d96 presets)
            "mosi": cls(d_model=192, layers=4, latent_layers=4, train_missing_rate=0.2,
                        text_encoder="bert-base-uncased", **cls.OFFICIAL),
            "mosei": cls(d_model=192, layers=2, latent_layers=3, train_missing_rate=0.1,
                         text_encoder="bert-base-uncased", **cls.OFFICIAL),
            "mosi_d96": cls(d_model=96, layers=4, latent_layers=4, train_missing_rate=0.2,
                            text_encoder="bert-base-uncased", **cls.OFFICIAL),
            "mosei_d96": cls(d_model=96, layers=2, latent_layers=3, train_missing_rate=0.1,
                             text_encoder="bert-base-uncased", **cls.OFFICIAL),
            # SynthMSA on a CPU (chapter 5), not from the paper: narrow and shallow, a larger lr
            # with a cosine schedule and norm clipping, lighter dropout, one model over all MRs
            "synth": cls(d_model=32, heads=4, layers=1, latent_layers=1, hyper_depth=1, head_ff=64,
                         head_layers=1, attn_dropout=0.1, relu_dropout=0.1, res_dropout=0.1,
                         embed_dropout=0.1, train_missing_rates=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
                         lr=2e-3, batch_size=64, eval_batch_size=128, epochs=10, patience=None,
                         grad_clip=1.0, clip_mode="norm", reset_optimizer=False),
        }
        if name not in presets:
            raise KeyError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]

    def train_config(self, **overrides):
        """This config's recipe as a ``msa_lib.train.TrainConfig`` (overrides win). Official: constant
        lr, Adam state reset every epoch, clipping by value, early stopping on validation loss."""
        from ..train import TrainConfig
        kw = dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                  schedule="constant" if self.recipe == "official" else "cosine", warmup=0.0 if
                  self.recipe == "official" else 0.1, grad_clip=self.grad_clip, clip_mode=self.clip_mode,
                  reset_optimizer=self.reset_optimizer, patience=self.patience, select_on="loss",
                  eval_batch_size=self.eval_batch_size)
        kw.update(overrides)
        return TrainConfig(**kw)


# ---------------------------------------------------------------------------------------------
# 1. Pre-processing: a MulT encoder per modality
# ---------------------------------------------------------------------------------------------
class MulTEncoder(nn.Module):
    """(B, L, d) projected frames -> (B, d): scale by sqrt(d), add positions, layers, LayerNorm,
    max over time. No attention mask: padding and missing frames are seen as zeros (the code)."""

    def __init__(self, cfg: HMEConfig):
        super().__init__()
        self.layers = nn.ModuleList(MulTLayer(cfg.d_model, cfg.heads, cfg.attn_dropout, cfg.relu_dropout,
                                              cfg.res_dropout, cfg.ff_mult) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.embed_dropout = cfg.embed_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = math.sqrt(x.shape[-1]) * x + padded_sinusoids(x)
        h = F.dropout(h, self.embed_dropout, self.training)
        for layer in self.layers:
            h = layer(h)
        return self.norm(h).amax(dim=1)                                            # H_m: (B, d)


# ---------------------------------------------------------------------------------------------
# 2. Modality enhancement: retrieval, then Perceivers with learnable latents
# ---------------------------------------------------------------------------------------------
def retrieve(h: torch.Tensor, query_ok: torch.Tensor, pool: torch.Tensor, candidate: torch.Tensor,
             fallback: torch.Tensor, threshold: float, exclude: torch.Tensor | None = None):
    """Borrow same-modality evidence from similar samples.

    h: (B, d) queries; pool: (N, d) the retrieval pool (the batch itself, or a bank).
    query_ok: (B,) bool, the query has this modality (else it takes the fallback mean).
    candidate: (N,) bool, pool entries a query may pick as neighbours.
    fallback: (N,) bool, pool entries averaged when a query has no neighbour.
    exclude: (B, N) bool, pairs never used as neighbours (a sample and itself).
    Returns (B, d) the uniform mean of the chosen entries and W (B, N), the weights used.
    """
    cos = F.normalize(h, dim=-1, eps=1e-8) @ F.normalize(pool, dim=-1, eps=1e-8).T     # (B, N)
    near = (cos >= threshold) & candidate[None, :] & query_ok[:, None]
    if exclude is not None:
        near = near & ~exclude
    use = torch.where(near.any(dim=1, keepdim=True), near, fallback[None, :].expand_as(near))
    W = use.to(h.dtype) / use.sum(dim=1, keepdim=True).clamp(min=1)
    return W @ pool, W


class PerceiverAttention(nn.Module):
    """Queries (B, Lq, d) attend to a context (B, Lc, d); bias-free q/k/v (Perceiver's)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(d, d, bias=False)
        self.to_kv = nn.Linear(d, 2 * d, bias=False)
        self.to_out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, Lq, d = x.shape
        split = lambda t: t.view(B, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        k, v = self.to_kv(context).chunk(2, dim=-1)
        y = F.scaled_dot_product_attention(split(self.to_q(x)), split(k), split(v))
        return self.to_out(y.transpose(1, 2).reshape(B, Lq, d))


class GEGLU(nn.Module):
    """Linear(d, 2 h d) -> x * gelu(gate) -> Linear(h d, d)."""

    def __init__(self, d: int, mult: int):
        super().__init__()
        self.up, self.down = nn.Linear(d, 2 * mult * d), nn.Linear(mult * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.up(x).chunk(2, dim=-1)
        return self.down(x * F.gelu(gate))


class CrossBlock(nn.Module):
    """One residual step: x + attn(LN x, LN' context), then x + GEGLU(LN x)."""

    def __init__(self, d: int, heads: int, mult: int):
        super().__init__()
        self.norm_q, self.norm_c, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn, self.ff = PerceiverAttention(d, heads), GEGLU(d, mult)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_q(x), self.norm_c(context))
        return x + self.ff(self.norm_ff(x))


class SelfBlock(nn.Module):
    """x + attn(LN x, LN x), then x + GEGLU(LN x)."""

    def __init__(self, d: int, heads: int, mult: int):
        super().__init__()
        self.norm, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn, self.ff = PerceiverAttention(d, heads), GEGLU(d, mult)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        x = x + self.attn(h, h)
        return x + self.ff(self.norm_ff(x))


class Perceiver(nn.Module):
    """P learnable latents read a context (B, Lc, d): depth x (cross block, self block);
    the mean over latents, normalised -> (B, d). With Lc = 1 every cross-attention weight is 1."""

    def __init__(self, cfg: HMEConfig):
        super().__init__()
        d = cfg.d_model
        self.latents = nn.Parameter(torch.randn(cfg.num_latents, d))
        self.blocks = nn.ModuleList(nn.ModuleList([CrossBlock(d, cfg.heads, cfg.ff_mult),
                                                   SelfBlock(d, cfg.heads, cfg.ff_mult)])
                                    for _ in range(cfg.latent_layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        x = self.latents.expand(context.shape[0], -1, -1)
        for cross, self_block in self.blocks:
            x = self_block(cross(x, context))
        return self.norm(x.mean(dim=1))


class CrossEncoder(nn.Module):
    """Hyper-modality generation: query (B, Lq, d) reads context (B, Lc, d) through ``hyper_depth``
    cross blocks; the mean over query tokens, normalised -> (B, d)."""

    def __init__(self, cfg: HMEConfig):
        super().__init__()
        self.blocks = nn.ModuleList(CrossBlock(cfg.d_model, cfg.heads, cfg.ff_mult) for _ in range(cfg.hyper_depth))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            query = block(query, context)
        return self.norm(query.mean(dim=1))


# ---------------------------------------------------------------------------------------------
# 3. Variational information bottleneck and the uncertainty-aware gates
# ---------------------------------------------------------------------------------------------
class VIB(nn.Module):
    """R (B, d) -> mu, sigma (B, d) from one MLP split in half; F = mu + eps * sigma;
    an auxiliary prediction yhat (B,) from F; KL to N(0, I) averaged over batch and dims."""

    def __init__(self, d: int, shift: float):
        super().__init__()
        self.shift = shift
        self.encode = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, 2 * d), nn.ReLU(),
                                    nn.Linear(2 * d, 2 * d))
        self.decode = nn.Linear(d, 1)

    def forward(self, r: torch.Tensor, sample: bool):
        mu, s = self.encode(r).chunk(2, dim=-1)
        sigma = F.softplus(s - self.shift)
        f = mu + torch.randn_like(sigma) * sigma if sample else mu
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 2 * sigma.log() - 1).mean()
        return f, sigma, self.decode(f)[:, 0], kl


def gate_mlp(d_in: int, d: int, n_out: int, dropout: float) -> nn.Sequential:
    """Linear -> Dropout -> ReLU -> Linear(d, n_out): the gates' logits (the code's order)."""
    return nn.Sequential(nn.Linear(d_in, d), nn.Dropout(dropout), nn.ReLU(), nn.Linear(d, n_out))


def confidence(sigma: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """zeta = clamp(1 / (mean_k sigma_k + 1e-8), low, high): (B, d) -> (B,)."""
    return (1.0 / (sigma.mean(dim=1) + 1e-8)).clamp(low, high)


class UncertaintyGate2(nn.Module):
    """S_m = w0 H_m + w1 F_m, w = softmax([a0, zeta a1] / sqrt d): only the enriched branch's
    logit is scaled by the confidence (a logit, not a probability: a negative a1 times zeta < 1
    *raises* that branch's weight)."""

    def __init__(self, cfg: HMEConfig):
        super().__init__()
        self.cfg, self.mlp = cfg, gate_mlp(2 * cfg.d_model, cfg.d_model, 2, cfg.gate_dropout)

    def forward(self, h: torch.Tensor, f: torch.Tensor, zeta: torch.Tensor):
        a = self.mlp(torch.cat([h, f], dim=-1))                                    # (B, 2)
        a = a * torch.stack([torch.ones_like(zeta), zeta], dim=1)
        w = (a / math.sqrt(h.shape[-1])).softmax(dim=1)
        return w[:, :1] * h + w[:, 1:] * f, w


class UncertaintyGate3(nn.Module):
    """S_H = sum_m w_m F_m, w = softmax(a * u / sqrt d), u = softmax_m(1 / mean sigma_m) (unclamped)."""

    def __init__(self, cfg: HMEConfig):
        super().__init__()
        self.mlp = gate_mlp(3 * cfg.d_model, cfg.d_model, 3, cfg.gate_dropout)

    def forward(self, fs: torch.Tensor, u: torch.Tensor | None):                   # fs: (B, 3, d)
        a = self.mlp(fs.flatten(1))                                                # (B, 3)
        if u is not None:
            a = a * u
        w = (a / math.sqrt(fs.shape[-1])).softmax(dim=1)
        return (w[..., None] * fs).sum(dim=1), w


# ---------------------------------------------------------------------------------------------
# 4. The model
# ---------------------------------------------------------------------------------------------
MODS = ("text", "audio", "vision")


@register("hme", HMEConfig)
class HME(MSAModel):
    """forward(batch) -> ModelOutput(pred (B,), aux). aux: H (B, 3, d) pooled encodings,
    present (B, 3), sigma (B, 3) mean VIB std, zeta (B, 3) confidences, u (B, 3) the softmax over
    1/sigma, w2 (B, 3, 2) and w3 (B, 3) gate weights, yhat (B, 3) VIB predictions, kl (scalar),
    retrieval (3 x (B, N) weights over the pool) and pool_index (N,) (-1: a batch sample)."""

    def __init__(self, spec: DatasetSpec, cfg: HMEConfig):
        super().__init__(spec, cfg)
        for key, allowed in (("retrieval", ("batch", "bank")), ("availability", ("mask", "zero")),
                             ("init", ("torch", "bert"))):
            if getattr(cfg, key) not in allowed:
                raise ValueError(f"HME {key} must be one of {allowed}, got {getattr(cfg, key)!r}")
        if cfg.d_model % cfg.heads:
            raise ValueError(f"d_model={cfg.d_model} is not divisible by heads={cfg.heads}")
        d, (dt, da, dv) = cfg.d_model, spec.dims
        # 1. kernel-1 projections (bias-free, as the code's Conv1d) and the MulT encoders
        self.proj = nn.ModuleDict({
            "text": TextEncoder(dt, d, cfg.text_encoder, cfg.finetune_text, spec.unk_token_id, bias=False),
            "audio": nn.Linear(da, d, bias=False), "vision": nn.Linear(dv, d, bias=False)})
        self.encoder = nn.ModuleDict({m: MulTEncoder(cfg) for m in MODS})
        # 2. modality enhancement and the sample-level prompt
        self.enhance = nn.ModuleDict({m: Perceiver(cfg) for m in MODS})
        self.sample_prompt = Perceiver(cfg)
        # 3. hyper-modality generation: six pairwise encoders, three read by E_S
        self.pair = nn.ModuleDict({f"{a[0]}2{b[0]}": CrossEncoder(cfg) for a in MODS for b in MODS if a != b})
        self.hyper = nn.ModuleDict({m: CrossEncoder(cfg) for m in MODS})
        # 4. VIB and the uncertainty-aware gates
        self.vib = nn.ModuleDict({m: VIB(d, cfg.sigma_shift) for m in MODS})
        self.gate2 = nn.ModuleDict({m: UncertaintyGate2(cfg) for m in MODS})
        self.gate3 = UncertaintyGate3(cfg)
        # 5. final transformer over [S_L, S_A, S_V, S_H] and the MLP head
        layer = nn.TransformerEncoderLayer(d, cfg.heads, dim_feedforward=cfg.head_ff, dropout=cfg.out_dropout,
                                           batch_first=True)
        self.fusion = nn.TransformerEncoder(layer, cfg.head_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(4 * d, 2 * d), nn.Dropout(cfg.out_dropout), nn.ReLU(),
                                  nn.Linear(2 * d, 1))
        # memory bank (retrieval="bank"): pooled H per training sample, sized at the first epoch
        self.register_buffer("bank", torch.zeros(0, 3, d))
        self.register_buffer("bank_present", torch.zeros(0, 3, dtype=torch.bool))
        if cfg.init == "bert":
            self._bert_init()

    def _bert_init(self) -> None:
        """What ``BertPreTrainedModel.init_weights`` does to the official model: every Linear
        N(0, 0.02) with zero bias, except the kernel-1 Conv1d projections (PyTorch's default) and
        raw parameters (MulT's and PyTorch's packed q/k/v projections: Xavier; the latents: N(0, 1))."""
        skip = {id(m) for m in self.proj.modules()}
        for m in self.modules():
            if isinstance(m, nn.Linear) and id(m) not in skip:
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, MulTAttention):                      # fairseq: Xavier on the packed q/k/v, zero bias
                nn.init.xavier_uniform_(m.in_proj.weight)
                nn.init.zeros_(m.in_proj.bias)

    # -- the bank follows the training split's size when loaded from a checkpoint -------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("bank", "bank_present"):
            if prefix + name in state_dict:
                current = getattr(self, name)                  # keep the device the model is on
                setattr(self, name, torch.zeros_like(state_dict[prefix + name], device=current.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- pieces ----------------------------------------------------------------------------
    def encode(self, batch: Batch):
        """H (B, 3, d): each modality zeroed where missing, projected, encoded, max-pooled;
        present (B, 3) bool by the ``availability`` rule."""
        given = batch.present()                                                    # (B, 3) from the masks
        H = []
        for mi, m in enumerate(MODS):
            x = (self.proj[m](batch.text, batch.text_mask, batch.text_ids) if m == "text"
                 else self.proj[m](batch.features(m)))
            x = x * given[:, mi, None, None].to(x.dtype)                            # missing = all zeros
            H.append(self.encoder[m](x))
        H = torch.stack(H, dim=1)                                                  # (B, 3, d)
        present = given if self.cfg.availability == "mask" else H.sum(dim=-1) != 0
        return H, present

    def pool(self, H: torch.Tensor, present: torch.Tensor, batch: Batch):
        """The retrieval pool for this forward: (pool H (N, 3, d), pool present (N, 3), exclude
        (B, N), pool_index (N,)). Batch mode (and the first epoch of a bank): the batch itself."""
        B = H.shape[0]
        eye = torch.eye(B, dtype=torch.bool, device=H.device)
        use_bank = self.cfg.retrieval == "bank" and len(self.bank) > 0 and bool(self.bank_present.any())
        if not use_bank:
            return H, present, eye, torch.full((B,), -1, device=H.device)
        exclude = None
        if self.training:                                                          # never borrow from yourself
            idx = batch.index.to(H.device)
            exclude = idx[:, None] == torch.arange(len(self.bank), device=H.device)[None, :]
        return self.bank, self.bank_present, exclude, torch.arange(len(self.bank), device=H.device)

    def enhance_all(self, H, present, batch):
        """E (B, 3, d) from the retrieved means, E_S (B, d), and the retrieval weights."""
        pool_h, pool_present, exclude, pool_index = self.pool(H, present, batch)
        E, weights = [], []
        for mi, m in enumerate(MODS):
            if self.cfg.use_retrieval:
                cand = pool_present[:, mi]
                fallback = cand
                if self.cfg.availability == "zero":                                # the code: any row may be a
                    cand = torch.ones_like(cand)                                   # neighbour; the fallback mean
                hm, W = retrieve(H[:, mi], present[:, mi], pool_h[:, mi], cand, fallback,  # skips zero rows
                                 self.cfg.similarity_threshold, exclude)
                weights.append(W)
            else:
                hm = H[:, mi]
            E.append(self.enhance[m](hm[:, None, :]))                             # 1-token context
        E_S = self.sample_prompt(H)                                                # 3-token context
        return torch.stack(E, dim=1), E_S, weights, pool_index

    def hyper_modalities(self, E: torch.Tensor, E_S: torch.Tensor) -> torch.Tensor:
        """R (B, 3, d): E_{m->o} = pair(E_m, E_o); R_m = hyper_m(E_S, [E_{m->o1}, E_{m->o2}])."""
        e = {m: E[:, mi, None, :] for mi, m in enumerate(MODS)}
        R = []
        for m in MODS:
            others = [self.pair[f"{m[0]}2{o[0]}"](e[m], e[o]) for o in MODS if o != m]
            R.append(self.hyper[m](E_S[:, None, :], torch.stack(others, dim=1)))
        return torch.stack(R, dim=1)

    # -- forward ---------------------------------------------------------------------------
    def forward(self, batch: Batch) -> ModelOutput:
        cfg = self.cfg
        H, present = self.encode(batch)
        E, E_S, weights, pool_index = self.enhance_all(H, present, batch)
        R = self.hyper_modalities(E, E_S)
        sample = self.training or cfg.sample_at_eval
        Fs, sig, yhat, kls = [], [], [], []
        for mi, m in enumerate(MODS):
            if cfg.use_vib:
                f, sigma, y_m, kl = self.vib[m](R[:, mi], sample)
            else:
                f, sigma, y_m, kl = R[:, mi], None, None, None
            Fs.append(f), sig.append(sigma), yhat.append(y_m), kls.append(kl)
        uncertain = cfg.use_vib and cfg.use_uncertainty
        ones = H.new_ones(H.shape[0])
        zeta = [confidence(s, cfg.conf_low, cfg.conf_high) if uncertain else ones for s in sig]
        S, w2 = [], []
        for mi, m in enumerate(MODS):
            s_m, w = self.gate2[m](H[:, mi], Fs[mi], zeta[mi])
            S.append(s_m), w2.append(w)
        Fs = torch.stack(Fs, dim=1)                                                # (B, 3, d)
        u = (1.0 / (torch.stack([s.mean(dim=1) for s in sig], dim=1) + 1e-8)).softmax(dim=1) if uncertain else None
        S_H, w3 = self.gate3(Fs, u)
        tokens = self.fusion(torch.stack(S + [S_H], dim=1))                       # (B, 4, d)
        pred = self.head(tokens.flatten(1))[:, 0]
        aux = {"H": H, "present": present, "zeta": torch.stack(zeta, dim=1), "w2": torch.stack(w2, dim=1),
               "w3": w3, "retrieval": weights, "pool_index": pool_index}
        if cfg.use_vib:
            aux.update(sigma=torch.stack([s.mean(dim=1) for s in sig], dim=1), u=u,
                       yhat=torch.stack(yhat, dim=1), kl=torch.stack(kls).mean())
        if self.training and cfg.retrieval == "bank" and len(self.bank):
            self._remember(batch, H, present)
        return ModelOutput(pred, aux)

    @torch.no_grad()
    def _remember(self, batch: Batch, H: torch.Tensor, present: torch.Tensor) -> None:
        """Write this training batch's pooled H (detached) into the bank rows of its samples."""
        idx = batch.index.to(self.bank.device)
        self.bank[idx] = H.detach().to(self.bank.dtype)
        self.bank_present[idx] = present

    # -- loss, training-time missingness, optimiser groups -----------------------------------
    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, torch.Tensor]:
        cfg, aux = self.cfg, out.aux
        terms = {"task": self.regression_loss(out.pred, batch.label)}
        if cfg.use_vib:
            terms["vib"] = torch.stack([self.regression_loss(aux["yhat"][:, i], batch.label) for i in range(3)]).mean()
            terms["kl"] = aux["kl"]
            terms["total"] = terms["task"] + cfg.aux_weight * terms["vib"] + cfg.kl_weight * terms["kl"]
        else:
            terms["total"] = terms["task"]
        return terms

    def on_epoch_start(self, epoch: int, train_split, device, seed: int = 0) -> None:
        """Size the bank at the first epoch; the base class draws the epoch's keep matrix."""
        super().on_epoch_start(epoch, train_split, device, seed)
        n = len(train_split)
        if self.cfg.retrieval == "bank" and len(self.bank) != n:
            self.bank = torch.zeros(n, 3, self.cfg.d_model, device=device)
            self.bank_present = torch.zeros(n, 3, dtype=torch.bool, device=device)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Official: decay everything but parameters named '*bias*' or '*LayerNorm.weight*' (the
        latter are BERT's only); book: the base rule (matrices only)."""
        if self.cfg.recipe != "official":
            return super().param_groups(weight_decay)
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        plain = [p for n, p in named if "bias" in n or "LayerNorm.weight" in n]
        decay = [p for n, p in named if not ("bias" in n or "LayerNorm.weight" in n)]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]

    # -- teaching helper ----------------------------------------------------------------------
    @torch.no_grad()
    def refresh_bank(self, split, batch_size: int = 256) -> None:
        """Recompute the bank from ``split`` (clean, every modality present) with the current weights."""
        from ..data.batch import iterate
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        self.bank = torch.zeros(len(split), 3, self.cfg.d_model, device=device)
        self.bank_present = torch.zeros(len(split), 3, dtype=torch.bool, device=device)
        for b in iterate(split, batch_size):
            b = b.to(device)
            H, present = self.encode(b)
            self.bank[b.index] = H
            self.bank_present[b.index] = present
        self.train(was)

