"""CyIN: a cyclic informative latent space for complete and incomplete multimodal learning.

Lin, He, Mai, Zeng, Xiong, Huang, Tan and Hu, NeurIPS 2025 (arXiv 2602.04920). Read beside the
paper and the official code (github.com/RH-Lin/CyIN, full code at commit da04a3d), whose
behaviour this file follows unless a comment says otherwise.

One model for complete and incomplete data, trained on complete clips only:

1. ``align`` -- every modality is average-pooled to the text length T (strided groups, as the
   code's AlignSubNet).
2. Token-level information bottleneck -- ``GaussianEncoder`` maps each token of modality S to
   (mu, log sigma^2); a bottleneck latent B_S is sampled; a ``Decoder`` per *target* modality T
   reconstructs T's tokens from B_S for all nine (S, T) pairs (the "cyclic interaction"):
   ``KL(B_S) + beta * MSE(D_T(B_S), x_T)``.
3. Label-level bottleneck -- a linear head on the time-averaged B_S predicts the label.
4. ``CascadedResidualAE`` translators Gamma_LA, Gamma_LV, Gamma_AV (each used in both directions)
   map one bottleneck to another, trained with forward and back-translation; with two sources
   the two translations are summed.
5. ``MulTFusion`` on the bottlenecks (translated ones where a modality is missing).

Loss: ``task(y_hat) + sum_m task(y_hat_m) + (1 / beta) * IB + gamma * translation``.
Two stages: stage 1 (the first ``stage_divide`` of the epochs) trains without translation;
stage 2 adds the translation losses and feeds the fusion network, per modality and batch, one
of {translation from source 1, from source 2, their sum, the original} at random.

Switches where the book may differ from the code (paper presets: the code's value):
``sample_at_eval`` (code: True, the bottleneck is sampled at test time too), ``decoder_sigmoid``
(code: True, reconstructions squashed to (0, 1) though the targets are raw features),
``align`` ("strided", the code; "contiguous" windows). Ablations: ``token_ib``, ``cyclic_ib``
(False: intra-modal S -> S only, the code's commented-out line), ``label_ib``,
``back_translation``, ``stage2_substitution``.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batch import Batch
from ..data.spec import DatasetSpec
from ..layers import TextEncoder
from ..layers.mult import MulTTransformer
from .base import ModelOutput, MSAModel, register

MODS = ("text", "audio", "vision")
def others(m: str) -> list[str]:
    """The two modalities that are not ``m``, in MODS order."""
    return [s for s in MODS if s != m]


PAIRS = {("text", "audio"): "la", ("audio", "text"): "la", ("text", "vision"): "lv",
         ("vision", "text"): "lv", ("audio", "vision"): "av", ("vision", "audio"): "av"}


@dataclass
class CyINConfig:
    # --- widths (released MOSI config, spec section 6.1) ---
    common_dim: int = 256          # C_U: width of the MulT fusion
    ib_hidden: int = 256           # C_ib: hidden width of the IB encoders and decoders
    ib_dim: int = 128              # C_B: bottleneck channels per token
    cra_layers: tuple = (64, 32, 16)   # hidden channels of each CRA encoder (decoder: reversed)
    cra_blocks: int = 8            # residual blocks per translator
    cra_kernel: int = 3
    nlevels: int = 2               # layers of each cross-modal transformer (memory: max(nlevels, 3))
    heads: int = 8
    attn_dropout_l: float = 0.1    # attention dropout of streams reading text ...
    attn_dropout_a: float = 0.3    # ... audio
    attn_dropout_v: float = 0.0    # ... vision
    attn_dropout_mem: float = 0.4
    embed_dropout: float = 0.0
    output_dropout: float = 0.3
    conv_kernel: int = 3           # temporal projection before fusion (padding 0: T -> T - 2)
    causal: bool = True            # MulT's attn_mask=True
    # --- the objective ---
    beta: float = 16.0             # p_eta: weight of the reconstruction inside IB, and 1/beta on IB
    gamma: float = 10.0            # weight of the translation loss (stage 2)
    stage_divide: float = 0.1      # share of the epochs in stage 1
    loss: str = "l1"
    text_encoder: str = "features"
    finetune_text: bool = True
    # --- where code and book may differ ---
    sample_at_eval: bool = True    # code: the bottleneck is sampled at test time too
    decoder_sigmoid: bool = True   # code: decoders end in a sigmoid
    align: str = "strided"         # code: strided groups; "contiguous": neighbouring frames
    # --- ablations (paper Table 2) ---
    token_ib: bool = True          # False: no token-level IB loss ("w/o L_tib")
    cyclic_ib: bool = True         # False: intra-modal reconstructions only ("w/o cyclic interaction")
    label_ib: bool = True          # False: no unimodal label heads ("w/o L_lib")
    back_translation: bool = True  # False: forward translation loss only
    stage2_substitution: bool = True   # False: the fusion never sees translated latents in training
    # --- the official recipe (build a TrainConfig with train_config()) ---
    lr: float = 5e-4               # everything but the language model
    lr_text: float = 4e-5          # the language model
    weight_decay: float = 1e-3
    batch_size: int = 128
    epochs: int = 30
    grad_clip: float | None = 5.0  # by value
    select_on: str = "loss"        # the book picks the epoch on validation; "last": the code's (no selection)
    recipe: str = "book"

    OFFICIAL = dict(recipe="official", sample_at_eval=True, decoder_sigmoid=True, align="strided",
                    finetune_text=True, causal=True)

    @classmethod
    def preset(cls, name: str) -> "CyINConfig":
        presets = {
            # the released configs (config/config_regression.json); the paper's Table 6 is garbled
            "mosi": cls(text_encoder="bert-base-uncased", **cls.OFFICIAL),
            "mosei": cls(common_dim=16, ib_hidden=16, ib_dim=256, cra_layers=(128, 64, 32), cra_blocks=4,
                         nlevels=8, heads=2, attn_dropout_l=0.1, attn_dropout_a=0.0, attn_dropout_v=0.3,
                         attn_dropout_mem=0.2, embed_dropout=0.5, output_dropout=0.5, beta=32.0, gamma=5.0,
                         stage_divide=0.3, lr=5e-4, lr_text=1e-5, weight_decay=1e-5, grad_clip=1.0,
                         text_encoder="bert-base-uncased", **cls.OFFICIAL),
            # SynthMSA on a CPU (chapter 6), not from the paper: narrow, two translator blocks,
            # a mean bottleneck at test time, unbounded reconstructions
            "synth": cls(common_dim=16, ib_hidden=64, ib_dim=32, cra_layers=(32, 16, 8), cra_blocks=2,
                         nlevels=1, heads=2, attn_dropout_a=0.1, attn_dropout_mem=0.1, output_dropout=0.1,
                         beta=16.0, gamma=10.0, stage_divide=0.3, sample_at_eval=False, decoder_sigmoid=False, lr=1e-3,
                         weight_decay=1e-4, batch_size=64, epochs=10, grad_clip=1.0),
        }
        if name not in presets:
            raise KeyError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]

    def train_config(self, **overrides):
        """This config's recipe: AdamW, constant lr, clipping by value; the epoch is chosen on the
        validation loss (the code keeps the last one: ``select_on="last"``)."""
        from ..train import TrainConfig
        kw = dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                  schedule="constant", warmup=0.0, grad_clip=self.grad_clip, clip_mode="value",
                  select_on=self.select_on)
        kw.update(overrides)
        return TrainConfig(**kw)


# ---------------------------------------------------------------------------------------------
# 1. Alignment by average pooling
# ---------------------------------------------------------------------------------------------
def align(x: torch.Tensor, length: int, mode: str = "strided") -> torch.Tensor:
    """(B, L, D) -> (B, length, D). The last frame is repeated up to k * length frames, then
    "strided" averages frames t, t + length, t + 2 length, ... (the code) and "contiguous"
    averages frames k t ... k t + k - 1."""
    B, L, D = x.shape
    if L == length:
        return x
    k = math.ceil(L / length)
    x = torch.cat([x, x[:, -1:].expand(B, k * length - L, D)], dim=1)
    if mode == "strided":
        return x.view(B, k, length, D).mean(dim=1)
    return x.view(B, length, k, D).mean(dim=2)


# ---------------------------------------------------------------------------------------------
# 2. Token-level information bottleneck
# ---------------------------------------------------------------------------------------------
class GaussianEncoder(nn.Sequential):
    """Per token: (B, D, T) -> (B, 2 C_B, T), split into mu and log sigma^2 (kernel-1 convolutions)."""

    def __init__(self, d_in: int, hidden: int, d_b: int):
        super().__init__(nn.Conv1d(d_in, hidden, 1), nn.ReLU(), nn.Conv1d(hidden, 2 * d_b, 1))


class Decoder(nn.Sequential):
    """Per token: (B, C_B, T) -> (B, D_target, T), a sigmoid at the end (the code's)."""

    def __init__(self, d_b: int, hidden: int, d_out: int, sigmoid: bool):
        layers = [nn.Conv1d(d_b, hidden, 1), nn.ReLU(), nn.Conv1d(hidden, d_out, 1)]
        super().__init__(*layers, *([nn.Sigmoid()] if sigmoid else []))


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) averaged over every element: 0 when mu = 0 and log sigma^2 = 0."""
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())


def sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The reparameterisation trick: mu + eps * sigma."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


# ---------------------------------------------------------------------------------------------
# 3. Cascaded residual autoencoder translators
# ---------------------------------------------------------------------------------------------
def conv_stack(dims: list[int], kernel: int, act) -> list[nn.Module]:
    """Bias-free Conv1d between consecutive widths, an activation after each."""
    out = []
    for a, b in zip(dims[:-1], dims[1:]):
        out += [nn.Conv1d(a, b, kernel, padding=kernel // 2, bias=False), act()]
    return out


class CascadedResidualAE(nn.Module):
    """(B, C_B, T) -> (B, C_B, T). Each block encodes (input + the previous block's output) to a
    narrow code and decodes it; a transition convolution reads the last sum."""

    def __init__(self, d_b: int, layers: tuple, n_blocks: int, kernel: int):
        super().__init__()
        enc_dims, dec_dims = [d_b, *layers], [*reversed(layers)]
        self.encoders = nn.ModuleList(nn.Sequential(*conv_stack(enc_dims, kernel, nn.LeakyReLU)[:-1])
                                      for _ in range(n_blocks))          # no activation after the last
        self.decoders = nn.ModuleList(nn.Sequential(*conv_stack(dec_dims, kernel, nn.ReLU),
                                                    nn.Conv1d(dec_dims[-1], d_b, 1, bias=False))
                                      for _ in range(n_blocks))
        self.transition = nn.Sequential(nn.Conv1d(d_b, d_b, kernel, padding=kernel // 2, bias=False), nn.ReLU(),
                                        nn.Conv1d(d_b, d_b, kernel, padding=kernel // 2, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in, x_out = x, torch.zeros_like(x)
        for enc, dec in zip(self.encoders, self.decoders):
            x_in = x_in + x_out
            x_out = dec(enc(x_in))
        return self.transition(x_in + x_out)


# ---------------------------------------------------------------------------------------------
# 4. MulT fusion
# ---------------------------------------------------------------------------------------------
class MulTFusion(nn.Module):
    """Bottlenecks {m: (B, C_B, T)} -> (B, out): projection (kernel 3, no padding), six cross-modal
    transformers, a memory transformer per target over its two streams, mean over time, a
    residual MLP. Streams reading modality s use s's attention dropout (MulT's rule)."""

    def __init__(self, cfg: CyINConfig, out: int = 1):
        super().__init__()
        d, c = cfg.common_dim, cfg
        drop = {"text": c.attn_dropout_l, "audio": c.attn_dropout_a, "vision": c.attn_dropout_v}
        self.proj = nn.ModuleDict({m: nn.Conv1d(c.ib_dim, d, c.conv_kernel, bias=False) for m in MODS})
        self.cross = nn.ModuleDict({f"{t[0]}{s[0]}": MulTTransformer(d, c.heads, c.nlevels, drop[s],
                                                                      embed_dropout=c.embed_dropout, causal=c.causal)
                                    for t in MODS for s in MODS if s != t})
        self.memory = nn.ModuleDict({t: MulTTransformer(2 * d, c.heads, max(c.nlevels, 3), c.attn_dropout_mem,
                                                        embed_dropout=c.embed_dropout, causal=c.causal)
                                     for t in MODS})
        self.proj1, self.proj2 = nn.Linear(6 * d, 6 * d), nn.Linear(6 * d, 6 * d)
        self.out = nn.Linear(6 * d, out)
        self.output_dropout = c.output_dropout

    def forward(self, Z: dict) -> torch.Tensor:
        x = {m: self.proj[m](Z[m]).transpose(1, 2) for m in MODS}                # (B, T - 2, C_U)
        h = {}
        for t in MODS:
            streams = [self.cross[f"{t[0]}{s[0]}"](x[t], x[s]) for s in others(t)]
            h[t] = self.memory[t](torch.cat(streams, dim=-1)).mean(dim=1)          # (B, 2 C_U)
        hs = torch.cat([h["text"], h["vision"], h["audio"]], dim=-1)               # the code's order
        hs = hs + self.proj2(F.dropout(F.relu(self.proj1(hs)), self.output_dropout, self.training))
        return self.out(hs)[:, 0]


# ---------------------------------------------------------------------------------------------
# 5. The model
# ---------------------------------------------------------------------------------------------
@register("cyin", CyINConfig)
class CyIN(MSAModel):
    """forward(batch) -> ModelOutput(pred (B,), aux). aux: B (dict of (B, C_B, T) bottlenecks the
    fusion read), yhat (B, 3) label-level predictions, ib and translation losses (training),
    translated {(source, target): (B, C_B, T)} (evaluation) and the stage (1 or 2)."""

    def __init__(self, spec: DatasetSpec, cfg: CyINConfig):
        super().__init__(spec, cfg)
        if cfg.align not in ("strided", "contiguous"):
            raise ValueError(f"CyIN align must be 'strided' or 'contiguous', got {cfg.align!r}")
        for d in (cfg.common_dim, 2 * cfg.common_dim):
            if d % cfg.heads:
                raise ValueError(f"common_dim={cfg.common_dim}: {d} is not divisible by heads={cfg.heads}")
        self.length = spec.lengths[0]                                             # T: the text length
        self.text = TextEncoder(spec.dims[0], None, cfg.text_encoder, cfg.finetune_text, spec.unk_token_id)
        dims = dict(zip(MODS, (self.text.out_dim, *spec.dims[1:])))              # text enters unprojected
        self.encoder = nn.ModuleDict({m: GaussianEncoder(dims[m], cfg.ib_hidden, cfg.ib_dim) for m in MODS})
        self.decoder = nn.ModuleDict({m: Decoder(cfg.ib_dim, cfg.ib_hidden, dims[m], cfg.decoder_sigmoid)
                                      for m in MODS})
        self.label_head = nn.ModuleDict({m: nn.Linear(cfg.ib_dim, 1) for m in MODS})
        self.translator = nn.ModuleDict({k: CascadedResidualAE(cfg.ib_dim, cfg.cra_layers, cfg.cra_blocks,
                                                               cfg.cra_kernel) for k in ("la", "lv", "av")})
        self.fusion = MulTFusion(cfg)
        self.stage, self._rng = 1, random.Random(0)

    # -- pieces ----------------------------------------------------------------------------
    def inputs(self, batch: Batch) -> dict:
        """x_m (B, D_m, T): every modality (zeroed where the batch says it is missing) pooled to T."""
        present = batch.present()
        raw = {"text": self.text(batch.text, batch.text_mask, batch.text_ids),
               "audio": batch.audio, "vision": batch.vision}
        x = {}
        for mi, m in enumerate(MODS):
            v = raw[m] * present[:, mi, None, None].to(raw[m].dtype)
            x[m] = align(v, self.length, self.cfg.align).transpose(1, 2)
        return x

    def translate(self, source: str, target: str, z: torch.Tensor) -> torch.Tensor:
        """Gamma_{source -> target}: the pair's translator, shared by both directions."""
        return self.translator[PAIRS[(source, target)]](z)

    def all_translations(self, Z: dict) -> dict:
        """{(s, t): Gamma_{s -> t}(Z_s)} for the six ordered pairs, and {("+", t): the two-source sum}."""
        T = {(s, t): self.translate(s, t, Z[s]) for s in MODS for t in MODS if s != t}
        for t in MODS:
            s1, s2 = others(t)
            T[("+", t)] = T[(s1, t)] + T[(s2, t)]
        return T

    def ib_terms(self, x: dict, mu: dict, logvar: dict) -> tuple[dict, torch.Tensor]:
        """Token-level IB: a fresh sample of B_S per target, KL + beta * MSE(D_T(B_S), x_T), the mean
        over the 9 (or 3, without the cyclic interaction) pairs. Returns the last samples and the loss."""
        cfg, terms, Z = self.cfg, [], {}
        for s in MODS:
            targets = [s, *others(s)] if cfg.cyclic_ib else [s]
            for t in targets:
                Z[s] = sample(mu[s], logvar[s])
                terms.append(kl_standard_normal(mu[s], logvar[s]) + cfg.beta * F.mse_loss(self.decoder[t](Z[s]), x[t]))
        return Z, torch.stack(terms).mean()

    def translation_loss(self, Z: dict, T: dict) -> torch.Tensor:
        """Forward (and back-) translation MSE over the 9 targets (single sources and their sum)."""
        fwd = torch.stack([F.mse_loss(T[(s, t)], Z[t]) for (s, t) in T]).mean()
        if not self.cfg.back_translation:
            return fwd
        back = []
        for t in MODS:                       # t -> s -> t: translate the translation back
            s1, s2 = others(t)
            r1, r2 = self.translate(s1, t, T[(t, s1)]), self.translate(s2, t, T[(t, s2)])
            back += [F.mse_loss(r1, Z[t]), F.mse_loss(r2, Z[t]), F.mse_loss(r1 + r2, Z[t])]
        return fwd + torch.stack(back).mean()

    def supplement(self, Z: dict, T: dict, present: torch.Tensor) -> dict:
        """Replace each missing modality's latent by the translation from what is present (summed
        over two sources)."""
        out = {}
        for ti, t in enumerate(MODS):
            s1, s2 = others(t)
            i1, i2 = MODS.index(s1), MODS.index(s2)
            missing = ~present[:, ti]
            both = (missing & present[:, i1] & present[:, i2])[:, None, None]
            only1 = (missing & present[:, i1] & ~present[:, i2])[:, None, None]
            only2 = (missing & ~present[:, i1] & present[:, i2])[:, None, None]
            z = torch.where(both, T[("+", t)], Z[t])
            z = torch.where(only1, T[(s1, t)], z)
            out[t] = torch.where(only2, T[(s2, t)], z)
        return out

    # -- forward ---------------------------------------------------------------------------
    def forward(self, batch: Batch) -> ModelOutput:
        cfg = self.cfg
        x = self.inputs(batch)
        stats = {m: self.encoder[m](x[m]).chunk(2, dim=1) for m in MODS}
        mu, logvar = {m: s[0] for m, s in stats.items()}, {m: s[1] for m, s in stats.items()}
        aux = {"stage": self.stage}
        if self.training:
            Z, ib = self.ib_terms(x, mu, logvar)
            aux["ib"] = ib
            aux["yhat"] = torch.stack([self.label_head[m](Z[m].mean(dim=-1))[:, 0] for m in MODS], dim=1)
            fused = Z
            if self.stage == 2:
                T = self.all_translations(Z)
                aux["translation"] = self.translation_loss(Z, T)
                if cfg.stage2_substitution:               # one choice per modality and batch
                    fused = {}
                    for t in MODS:
                        s1, s2 = others(t)
                        fused[t] = self._rng.choice([T[(s1, t)], T[(s2, t)], T[("+", t)], Z[t]])
        else:
            Z = {m: sample(mu[m], logvar[m]) if cfg.sample_at_eval else mu[m] for m in MODS}
            T = self.all_translations(Z)
            fused = self.supplement(Z, T, batch.present())
            aux["translated"] = T
        aux["B"] = fused
        return ModelOutput(self.fusion(fused), aux)

    def representation_module(self) -> nn.Module:
        return self.fusion.out            # its input: the fused (B, 6 C_U) vector

    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, torch.Tensor]:
        cfg, aux = self.cfg, out.aux
        zero = out.pred.new_zeros(())
        terms = {"task": self.regression_loss(out.pred, batch.label)}
        terms["label"] = (sum(self.regression_loss(aux["yhat"][:, i], batch.label) for i in range(3))
                          if cfg.label_ib and "yhat" in aux else zero)
        terms["ib"] = aux["ib"] if cfg.token_ib and "ib" in aux else zero
        terms["translation"] = aux.get("translation", zero)
        terms["total"] = terms["task"] + terms["label"] + terms["ib"] / cfg.beta + cfg.gamma * terms["translation"]
        return terms

    # -- the two stages and the optimiser ------------------------------------------------------
    def on_epoch_start(self, epoch: int, train_split, device, seed: int = 0) -> None:
        """Stage 1 for the first ``stage_divide`` of ``cfg.epochs``, then stage 2; the stage-2
        substitutions draw from a generator seeded by (seed, epoch)."""
        super().on_epoch_start(epoch, train_split, device, seed)
        self.stage = 2 if epoch >= round(self.cfg.epochs * self.cfg.stage_divide) else 1
        self._rng = random.Random(seed * 1_000_003 + epoch)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """The code's three groups: the language model (its lr, with decay), its biases and
        LayerNorms (its lr, no decay), and everything else (with decay)."""
        lm = self.text.pretrained
        if lm is None or not any(p.requires_grad for p in lm.parameters()):
            return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]
        lm_named = [(n, p) for n, p in lm.named_parameters() if p.requires_grad]
        plain = [p for n, p in lm_named if "bias" in n or "LayerNorm" in n]
        lm_decay = [p for n, p in lm_named if not ("bias" in n or "LayerNorm" in n)]
        lm_ids = {id(p) for _, p in lm_named}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in lm_ids]
        return [{"params": lm_decay, "lr": self.cfg.lr_text, "weight_decay": weight_decay},
                {"params": plain, "lr": self.cfg.lr_text, "weight_decay": 0.0},
                {"params": rest, "weight_decay": weight_decay}]
