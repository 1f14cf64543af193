"""LNLN: Language-dominated Noise-resistant Learning Network (Zhang, Wang and Yu, NeurIPS 2024).

"Towards Robust Multimodal Sentiment Analysis with Incomplete Data" (arXiv 2409.20012).
Read top to bottom beside the paper: the small blocks come first, the model last.

The idea: language is the most informative modality, so keep it in charge -- but
when words go missing, *correct* the language stream before fusing.

1. **Modality embedding** -- each modality is read by a small transformer with 8
   learned tokens prepended; those 8 tokens are the modality's summary ``H1_m``.
2. **DMC (dominant modality correction)** -- a *completeness checker* estimates
   ``w`` = how much of the language survived; a *proxy generator* builds 8
   language-like tokens from audio and vision; the dominant stream is
   ``H1_d = (1 - w) H1_p + w H1_l``. An *effectiveness discriminator* behind a
   gradient-reversal layer pushes the proxy to look like clean language.
3. **DMML (dominant-modality-based multimodal learning)** -- ALMT's adaptive
   hyper-modality learning: the language encoder's three hidden states query audio
   and vision to build a "hyper-modality" stream, and a cross-transformer fuses it
   with the dominant stream.
4. **Reconstructor** (training only) -- maps damaged embeddings toward the
   embeddings of the clean input.

Loss: ``alpha L_cc + beta L_adv + gamma L_rec + delta L_sp``.

Where the official code (github.com/Haoyu-ha/LNLN, read at 80a052c) departs from the
paper, a config switch chooses; the default follows the code because it produced the
published numbers:

* ``grl_on_main_path`` (code: True) -- the gradient reversal sits on the proxy before
  it is mixed into ``H1_d``, so the *sentiment* loss also reaches the proxy generator
  reversed. False: only the discriminator's input is reversed (the paper's reading).
* ``discriminator_input`` (code: "mixed") -- the discriminator tells ``H1_d`` from clean
  language tokens (issue #5 says this is intended); "proxy" feeds ``H1_p`` as in Eq. 9.
* ``fusion_depth`` -- the paper says 4, the MOSI config uses 2 (presets follow the code).
* ``detach_rec_target`` (code: False) -- the clean target of the reconstruction loss is
  not detached, so L_rec pulls clean and damaged embeddings toward each other.
* ``legacy_static_masks`` (code, effectively: True) -- the released data loader keeps the
  training masks almost fixed for the whole run; we redraw them every epoch by default.
* The paper reconstructs the *input sequences*; the code reconstructs the 8-token
  embeddings. We follow the code.
* Checkpoints: the official code picks, per metric, the epoch that is best on the
  **test** set at r = 0.5. ``msa_lib.train.fit`` selects on validation only.

Text: the paper fine-tunes BERT; here text enters through ``layers.TextEncoder``
(default: a Linear over precomputed token features; "minilm" or a BERT path runs a
pretrained encoder on ``batch.text_ids``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batch import Batch
from ..data.spec import DatasetSpec
from ..layers import TextEncoder, grad_reverse
from ..missing import random_missing, sample_train_rates
from .base import ModelOutput, MSAModel, register


@dataclass
class LNLNConfig:
    # --- widths (official configs; spec section 4.3) ---
    d_model: int = 128            # width of every token
    n_tokens: int = 8             # summary tokens per modality (prepended learned tokens)
    depth: int = 2                # layers of the embedding, checker, proxy, reconstructor and language encoder
    fusion_depth: int = 2         # cross-transformer layers: MOSI config 2, MOSEI/SIMS 4 (paper text: 4)
    heads: int = 8                # attention heads everywhere
    dim_head: int = 64            # per-head width: inner width 8 x 64 = 512 although d_model is 128
    hyper_dim_head: int = 16      # per-head width of the hyper-modality layers (inner 128)
    mlp_dim: int = 128            # feed-forward hidden width (ratio 1)
    head_hidden: int = 64         # hidden width of the completeness and discriminator MLPs
    dropout: float = 0.0          # the official model has no dropout anywhere
    pos_init_std: float = 1.0     # learned positional tables ~ N(0, std); the code uses 1.0 (unscaled)
    text_encoder: str = "features"  # "features" (Linear over batch.text), "minilm", or a BERT name/path
    finetune_text: bool = True    # the paper fine-tunes BERT (ignored for "features")
    # --- loss weights (alpha, beta, gamma, delta of Eq. 14) ---
    alpha: float = 0.9            # completeness check L_cc
    beta: float = 0.8             # adversarial L_adv (0.6 on SIMS)
    gamma: float = 0.1            # reconstruction L_rec
    delta: float = 1.0            # sentiment prediction L_sp
    loss: str = "mse"             # L_sp is an MSE in the code
    # --- where code and paper differ (see module docstring) ---
    grl_on_main_path: bool = True     # code: True (L_sp reaches the proxy reversed); paper: False
    discriminator_input: str = "mixed"  # "mixed" (code: H1_d vs clean H1_l) or "proxy" (paper Eq. 9: H1_p)
    detach_rec_target: bool = False   # code: the clean target keeps its gradient
    # --- ablations (paper Table 4) ---
    use_dmc: bool = True          # False: H1_d = H1_l, no checker, proxy or discriminator
    use_dmml: bool = True         # False: concatenate the three embeddings, MLP ("w/o DMML")
    use_reconstructor: bool = True  # False: no reconstructor, no L_rec
    # --- training-time missing data (spec section 3.2) ---
    train_missing: bool = True    # corrupt training batches with LNLN's per-sample rates
    p_complete: float = 0.5       # probability that a (sample, modality) is kept complete
    legacy_static_masks: bool = False  # True: the same masks every epoch (what the released code does)
    exact_half: bool = False      # True: exactly half of each batch complete per modality (the code's
    #                               random.sample); False: each sample complete with probability p_complete
    # --- the official recipe (documented constants; build a TrainConfig with train_config()) ---
    lr: float = 1e-4              # AdamW over all parameters, BERT included
    weight_decay: float = 1e-4
    batch_size: int = 64
    epochs: int = 200             # warm-up 10 % of epochs, then cosine
    grad_clip: float | None = None  # the code does not clip gradients
    epoch_schedule: bool = False  # True: lr set once per epoch, warm-up from 0 (the code); False: per step
    decay_all: bool = False       # True: weight decay on every parameter (the code); False: matrices only
    recipe: str = "book"          # "official" in the paper presets: every switch above at the code's value

    OFFICIAL = dict(recipe="official", legacy_static_masks=True, exact_half=True, epoch_schedule=True,
                    decay_all=True, grad_clip=None, lr=1e-4, weight_decay=1e-4, batch_size=64, epochs=200,
                    grl_on_main_path=True, discriminator_input="mixed", detach_rec_target=False)

    @classmethod
    def preset(cls, name: str) -> "LNLNConfig":
        presets = {
            # the official configs and training run; text: BERT fine-tuned on the token ids
            "mosi": cls(fusion_depth=2, text_encoder="bert-base-uncased", **cls.OFFICIAL),
            "mosei": cls(fusion_depth=4, text_encoder="bert-base-uncased", **cls.OFFICIAL),
            "sims": cls(fusion_depth=4, beta=0.6, text_encoder="bert-base-chinese", **cls.OFFICIAL),
            # SynthMSA on a CPU: tuned for chapter 4, not from the paper. Narrow (d 32, 4 tokens,
            # one layer per stack, 2 heads of 16), a larger lr for 12 short epochs, clipping on.
            # grl_on_main_path=False: with the code's placement the reversed sentiment gradient
            # kept the completeness estimate w almost constant in such short runs (chapter 4).
            "synth": cls(d_model=32, n_tokens=4, depth=1, fusion_depth=1, heads=2, dim_head=16,
                         hyper_dim_head=16, mlp_dim=64, head_hidden=32, pos_init_std=0.1,
                         grl_on_main_path=False, lr=2e-3, weight_decay=1e-4, batch_size=64, epochs=12,
                         grad_clip=1.0),
        }
        if name not in presets:
            raise KeyError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]

    def train_config(self, **overrides):
        """The official training recipe as a ``msa_lib.train.TrainConfig`` (overrides win)."""
        from ..train import TrainConfig
        base = dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                    schedule="cosine", warmup=0.1, grad_clip=self.grad_clip, select_on="loss",
                    schedule_unit="epoch" if self.epoch_schedule else "step")
        return TrainConfig(**{**base, **overrides})


# ----------------------------------------------------------------------------- blocks
LONG_ATTENTION = 128 * 128  # query-key pairs above which the fused kernel is used (see attend)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(dh)) v over (B, h, L, dh) tensors, no mask.

    Written out for short sequences (the tokens, SynthMSA's frames), where it reads like
    the equation and is faster on a CPU than the fused kernel. Long ones (MOSI's 375/500
    frames) go through ``F.scaled_dot_product_attention``, which never stores the
    (Lq, Lk) scores: the same function, a third less time per MOSI training step
    (``python -m msa_lib bench --official``).
    """
    if q.shape[-2] * k.shape[-2] > LONG_ATTENTION:
        return F.scaled_dot_product_attention(q, k, v)
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5                       # (B, h, Lq, Lk)
    return scores.softmax(-1) @ v                                                 # (B, h, Lq, dh)


class Attention(nn.Module):
    """Multi-head attention with an inner width ``heads * dim_head`` that need not equal ``dim``.

    q, k, v projections have no bias; the output projection has one. No masks: the
    official model attends to padding too.
    """

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.out = nn.Linear(inner, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.heads, self.dim_head).transpose(1, 2)           # (B, h, L, dh)

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        B, h, L, dh = y.shape
        return y.transpose(1, 2).reshape(B, L, h * dh)                           # (B, L, inner)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        y = attend(self.split(self.to_q(q)), self.split(self.to_k(k)), self.split(self.to_v(v)))  # (B, h, Lq, dh)
        return self.out(self.merge(y))                                            # (B, Lq, dim)


class PreNormAttention(nn.Module):
    """Three separate LayerNorms for the query, key and value inputs, then attention."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dim_head)

    def forward(self, q, k, v):
        return self.attn(self.norm_q(q), self.norm_k(k), self.norm_v(v))


class FeedForward(nn.Sequential):
    """LN -> Linear -> GELU -> Linear (pre-norm; the residual is added by the caller)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, dim))


class Layer(nn.Module):
    """Pre-norm layer: x = MHA(LNq(x), LNk(ctx), LNv(ctx)) + x; x = FF(LN(x)) + x (ctx = x if None)."""

    def __init__(self, cfg: LNLNConfig):
        super().__init__()
        self.attn = PreNormAttention(cfg.d_model, cfg.heads, cfg.dim_head)
        self.ff = FeedForward(cfg.d_model, cfg.mlp_dim, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        x = x + self.drop(self.attn(x, ctx, ctx))
        return x + self.drop(self.ff(x))


class TokenTransformer(nn.Module):
    """Prepend ``n_extra`` learned tokens (zero-init), add a learned position table, run ``depth`` layers.

    forward(x (B, L, d)) -> (B, n_extra + L, d); with ``save_hidden`` the list of the
    input (after positions) and each layer's output. The table has ``max_len + n_extra``
    rows and is sliced to the actual length (a longer input is an error, as in the code).
    No final LayerNorm.
    """

    def __init__(self, cfg: LNLNConfig, max_len: int, n_extra: int = 0, depth: int | None = None):
        super().__init__()
        d = cfg.d_model
        self.n_extra = n_extra
        self.extra = nn.Parameter(torch.zeros(1, n_extra, d)) if n_extra else None
        self.pos = nn.Parameter(torch.randn(1, max_len + n_extra, d) * cfg.pos_init_std)
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg.depth if depth is None else depth)])

    def forward(self, x: torch.Tensor, save_hidden: bool = False):
        if self.extra is not None:
            x = torch.cat([self.extra.expand(x.shape[0], -1, -1), x], dim=1)     # (B, n_extra + L, d)
        if x.shape[1] > self.pos.shape[1]:
            raise ValueError(f"sequence of {x.shape[1]} tokens is longer than the position table "
                             f"({self.pos.shape[1]}); the spec's lengths are too short")
        x = x + self.pos[:, : x.shape[1]]
        hidden = [x]
        for layer in self.layers:
            x = layer(x)
            hidden.append(x)
        return hidden if save_hidden else x


class CrossTransformer(nn.Module):
    """Target queries, source keys/values; one learned token (zero-init) shared by both.

    forward(source (B, Ls, d), target (B, Lt, d)) -> (B, 1 + Lt, d). The source is
    never updated (it gets its own position table).
    """

    def __init__(self, cfg: LNLNConfig, source_len: int, target_len: int, depth: int):
        super().__init__()
        d = cfg.d_model
        self.token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_s = nn.Parameter(torch.randn(1, source_len + 1, d) * cfg.pos_init_std)
        self.pos_t = nn.Parameter(torch.randn(1, target_len + 1, d) * cfg.pos_init_std)
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(depth)])

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tok = self.token.expand(source.shape[0], -1, -1)                          # (B, 1, d)
        s = torch.cat([tok, source], 1) + self.pos_s[:, : source.shape[1] + 1]    # (B, 1 + Ls, d)
        t = torch.cat([tok, target], 1) + self.pos_t[:, : target.shape[1] + 1]    # (B, 1 + Lt, d)
        for layer in self.layers:
            t = layer(t, context=s)
        return t


class HyperModalityLayer(nn.Module):
    """One step of ALMT's adaptive hyper-modality learning.

    The dominant tokens query audio and vision separately (same queries, two
    softmaxes); the sum of the two read-outs, projected, *shifts* the hyper-modality
    stream: H_hyper' = LN(H_hyper) + W_o (Attn(Q, K_a, V_a) + Attn(Q, K_v, V_v)).
    The residual is taken on the layer-normed stream, as in the official code.
    """

    def __init__(self, cfg: LNLNConfig):
        super().__init__()
        d, h, dh = cfg.d_model, cfg.heads, cfg.hyper_dim_head
        self.norm_d, self.norm_a, self.norm_v, self.norm_h = (nn.LayerNorm(d) for _ in range(4))
        self.heads, self.dim_head = h, dh
        self.to_q = nn.Linear(d, h * dh, bias=False)
        self.to_ka, self.to_va = nn.Linear(d, h * dh, bias=False), nn.Linear(d, h * dh, bias=False)
        self.to_kv, self.to_vv = nn.Linear(d, h * dh, bias=False), nn.Linear(d, h * dh, bias=False)
        self.out = nn.Linear(h * dh, d)

    def _heads(self, x):
        B, L, _ = x.shape
        return x.view(B, L, self.heads, self.dim_head).transpose(1, 2)           # (B, h, L, dh)

    def forward(self, h_dom, h_a, h_v, h_hyper):
        q = self._heads(self.to_q(self.norm_d(h_dom)))                           # (B, h, T, dh)
        a, v = self.norm_a(h_a), self.norm_v(h_v)
        read_a = attend(q, self._heads(self.to_ka(a)), self._heads(self.to_va(a)))   # (B, h, T, dh)
        read_v = attend(q, self._heads(self.to_kv(v)), self._heads(self.to_vv(v)))
        B, _, T, _ = q.shape
        shift = self.out((read_a + read_v).transpose(1, 2).reshape(B, T, -1))    # (B, T, d)
        return self.norm_h(h_hyper) + shift


def mlp_head(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Linear -> LeakyReLU(0.1) -> Linear: the checker's and the discriminator's head."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, d_out))


class CompletenessChecker(nn.Module):
    """w = sigmoid(MLP(TokenTransformer(H1_l)[:, 0])): how complete is the language? (B, T, d) -> (B,)."""

    def __init__(self, cfg: LNLNConfig):
        super().__init__()
        self.encoder = TokenTransformer(cfg, max_len=cfg.n_tokens, n_extra=1)
        self.head = mlp_head(cfg.d_model, cfg.head_hidden, 1)

    def forward(self, h_l):
        c = self.encoder(h_l)[:, 0]                                               # (B, d): the extra token
        return torch.sigmoid(self.head(c))[:, 0]                                  # (B,)


class ProxyGenerator(nn.Module):
    """Language-like tokens from audio and vision: read [h_p | H1_a | H1_v] with T new prepended tokens.

    h_p (ones-init) is extra context only; the output is the T internal tokens. (B, T, d).
    """

    def __init__(self, cfg: LNLNConfig):
        super().__init__()
        T, d = cfg.n_tokens, cfg.d_model
        self.h_p = nn.Parameter(torch.ones(1, T, d))
        self.encoder = TokenTransformer(cfg, max_len=3 * T, n_extra=T)

    def forward(self, h_a, h_v):
        seq = torch.cat([self.h_p.expand(h_a.shape[0], -1, -1), h_a, h_v], dim=1)  # (B, 3T, d)
        return self.encoder(seq)[:, : self.h_p.shape[1]]                           # (B, T, d)


class Discriminator(nn.Module):
    """Per-token classifier: logits (N, 2) for "corrected dominant" (1) vs "clean language" (0)."""

    def __init__(self, cfg: LNLNConfig):
        super().__init__()
        self.net = mlp_head(cfg.d_model, cfg.head_hidden, 2)

    def forward(self, tokens):                                                    # (N, d)
        return self.net(tokens)


class Reconstructor(nn.Module):
    """One TokenTransformer per modality (no extra tokens): damaged H1_m -> estimate of clean H1_m."""

    def __init__(self, cfg: LNLNConfig):
        super().__init__()
        self.nets = nn.ModuleDict({m: TokenTransformer(cfg, max_len=cfg.n_tokens) for m in ("text", "audio", "vision")})

    def forward(self, h: dict) -> dict:
        return {m: net(h[m]) for m, net in self.nets.items()}                    # each (B, T, d)


class ModalityEmbedding(nn.Module):
    """Project one modality to d_model and read it with T prepended tokens: -> H1_m (B, T, d).

    forward(*inputs) passes ``inputs`` to the projection (text: features, mask, ids).
    """

    def __init__(self, cfg: LNLNConfig, proj: nn.Module, max_len: int):
        super().__init__()
        self.proj = proj
        self.encoder = TokenTransformer(cfg, max_len=max_len, n_extra=cfg.n_tokens)
        self.n_tokens = cfg.n_tokens

    def forward(self, *inputs):
        x = self.proj(*inputs)                                                    # (B, L, d)
        return self.encoder(x)[:, : self.n_tokens]                                # (B, T, d)


# --------------------------------------------------------------- training-time missing data
def lnln_train_corruption(batch: Batch, epoch: int, seed: int, spec: DatasetSpec,
                          p_complete: float = 0.5, static: bool = False, exact_half: bool = False) -> Batch:
    """LNLN's training corruption: per (sample, modality) a rate r ~ U(0, 1), or r = 0 with prob. p_complete.

    Each valid element is then dropped with probability r (text -> unk vector when the
    dataset has one, else zeros; frames -> zeros). ``static=True`` uses the same rates
    and masks every epoch; ``exact_half`` makes exactly half of the batch complete per
    modality (the official code). Usable as any model's ``train_batch`` (e.g. a baseline's:
    ``model.train_batch = functools.partial(lnln_train_corruption, spec=spec)``).
    The completeness target of a sample is ``1 - batch.missing_rate[:, 0]``.
    """
    e = 0 if static else epoch
    rates = sample_train_rates(batch.index.cpu().numpy(), seed, e, p_complete, exact_half)   # (B, 3)
    fill = "unk" if spec.unk_vector is not None else "zero"
    return random_missing(batch, rates, seed=seed + 7919, epoch=e, text_fill=fill, unk_vector=spec.unk_vector)


def _stack(a: Batch, b: Batch) -> Batch:
    """The inputs of two equally shaped batches, concatenated along the batch axis."""
    cat = lambda x, y: None if x is None else torch.cat([x, y], dim=0)  # noqa: E731
    return a.replace(text=cat(a.text, b.text), audio=cat(a.audio, b.audio), vision=cat(a.vision, b.vision),
                     text_mask=cat(a.text_mask, b.text_mask), text_ids=cat(a.text_ids, b.text_ids))


# ----------------------------------------------------------------------------- the model
@register("lnln", LNLNConfig)
class LNLN(MSAModel):
    """forward(batch) -> ModelOutput(pred (B,), aux); aux holds w, H1_l/a/v/p/d, the hyper stream
    and, in training with a clean batch, the discriminator's and reconstructor's outputs."""

    def __init__(self, spec: DatasetSpec, cfg: LNLNConfig):
        super().__init__(spec, cfg)
        if cfg.discriminator_input not in ("mixed", "proxy"):
            raise ValueError(f"discriminator_input must be 'mixed' or 'proxy', got {cfg.discriminator_input!r}")
        d, T = cfg.d_model, cfg.n_tokens
        (dt, da, dv), (lt, la, lv) = spec.dims, spec.lengths
        # 1. modality embedding (E1_m)
        text = TextEncoder(dt, d, cfg.text_encoder, cfg.finetune_text, spec.unk_token_id)
        self.embed = nn.ModuleDict({
            "text": ModalityEmbedding(cfg, text, lt),
            "audio": ModalityEmbedding(cfg, nn.Linear(da, d), la),
            "vision": ModalityEmbedding(cfg, nn.Linear(dv, d), lv),
        })
        # 2. DMC
        if cfg.use_dmc:
            self.checker = CompletenessChecker(cfg)
            self.proxy = ProxyGenerator(cfg)
            self.discriminator = Discriminator(cfg)
        # 3. DMML (or the "w/o DMML" concat fusion)
        if cfg.use_dmml:
            self.language_encoder = TokenTransformer(cfg, max_len=T)
            self.hyper = nn.ModuleList([HyperModalityLayer(cfg) for _ in range(cfg.depth + 1)])
            self.h_hyper = nn.Parameter(torch.ones(1, T, d))
            self.fusion = CrossTransformer(cfg, T, T, cfg.fusion_depth)
            self.head = nn.Linear(d, 1)
        else:
            self.head = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Linear(d, 1))
        # 4. reconstructor (training only)
        if cfg.use_reconstructor:
            self.reconstructor = Reconstructor(cfg)

    # -- pieces -------------------------------------------------------------------------
    def embed_all(self, b: Batch, clean: Batch | None = None):
        """H1_m for m in text/audio/vision, each (B, T, d); with ``clean`` also the clean input's.

        The damaged and the clean batch go through the same modules in one call of
        twice the batch size (the same numbers as two calls, fewer operations on a CPU).
        """
        both = b if clean is None else _stack(b, clean)
        H = {"text": self.embed["text"](both.text, both.text_mask, both.text_ids),
             "audio": self.embed["audio"](both.audio),
             "vision": self.embed["vision"](both.vision)}
        if clean is None:
            return H
        n = len(b)
        return {m: h[:n] for m, h in H.items()}, {m: h[n:] for m, h in H.items()}

    @staticmethod
    def mix(w: torch.Tensor, h_p: torch.Tensor, h_l: torch.Tensor) -> torch.Tensor:
        """H1_d = (1 - w) H1_p + w H1_l, w (B,) broadcast over tokens and channels."""
        w = w[:, None, None]
        return (1 - w) * h_p + w * h_l                                            # (B, T, d)

    def dmml(self, h_d, h_a, h_v):
        """Language encoder (3 states) -> 3 hyper-modality layers -> cross-transformer -> (B,), fused."""
        states = self.language_encoder(h_d, save_hidden=True)                    # depth+1 x (B, T, d)
        h_hyper = self.h_hyper.expand(h_d.shape[0], -1, -1)
        for layer, h in zip(self.hyper, states):
            h_hyper = layer(h, h_a, h_v, h_hyper)                                  # (B, T, d)
        fused = self.fusion(source=h_hyper, target=states[-1])                   # (B, 1 + T, d)
        return self.head(fused[:, 1:].mean(1))[:, 0], h_hyper, fused

    # -- forward ----------------------------------------------------------------------
    def forward(self, batch: Batch) -> ModelOutput:
        cfg = self.cfg
        training_branches = self.training and batch.clean is not None
        if training_branches:                                                     # clean input: same modules
            H, C = self.embed_all(batch, batch.clean)
        else:
            H = self.embed_all(batch)
        h_l, h_a, h_v = H["text"], H["audio"], H["vision"]
        aux = {"H1_l": h_l, "H1_a": h_a, "H1_v": h_v}
        if cfg.use_dmc:
            w = self.checker(h_l)                                                 # (B,)
            h_p = self.proxy(h_a, h_v)                                            # (B, T, d)
            h_p_rev = grad_reverse(h_p)
            h_d = self.mix(w, h_p_rev if cfg.grl_on_main_path else h_p, h_l)
            aux.update(w=w, H1_p=h_p, H1_d=h_d)
        else:
            h_d = h_l
            aux["H1_d"] = h_d
        if cfg.use_dmml:
            pred, h_hyper, fused = self.dmml(h_d, h_a, h_v)
            aux.update(H_hyper=h_hyper, fused=fused)
        else:
            pred = self.head(torch.cat([h_d.mean(1), h_a.mean(1), h_v.mean(1)], dim=-1))[:, 0]

        if training_branches:                                                     # training only
            aux["C1_l"] = C["text"]
            if cfg.use_dmc:
                if cfg.discriminator_input == "mixed":
                    fake = h_d if cfg.grl_on_main_path else self.mix(w, h_p_rev, h_l)
                else:                                                             # paper Eq. 9: the proxy itself
                    fake = h_p_rev
                tokens = torch.cat([fake, C["text"]], dim=0).reshape(-1, cfg.d_model)  # (2 B T, d)
                n = fake.shape[0] * fake.shape[1]
                aux["disc_logits"] = self.discriminator(tokens)                    # (2 B T, 2)
                aux["disc_labels"] = torch.cat([torch.ones(n), torch.zeros(n)]).long().to(tokens.device)
            if cfg.use_reconstructor:
                R = self.reconstructor(H)
                order = ("audio", "vision", "text")
                aux["rec"] = torch.cat([R[m] for m in order], dim=1)              # (B, 3T, d)
                target = torch.cat([C[m] for m in order], dim=1)
                aux["rec_target"] = target.detach() if cfg.detach_rec_target else target
        return ModelOutput(pred, aux)

    # -- loss and training corruption -----------------------------------------------------
    def loss(self, batch: Batch, out: ModelOutput) -> dict[str, torch.Tensor]:
        cfg, aux = self.cfg, out.aux
        zero = out.pred.new_zeros(())
        terms = {"sp": self.regression_loss(out.pred, batch.label)}
        terms["cc"] = F.mse_loss(aux["w"], 1.0 - batch.missing_rate[:, 0].to(aux["w"])) if "w" in aux else zero
        terms["adv"] = F.cross_entropy(aux["disc_logits"], aux["disc_labels"]) if "disc_logits" in aux else zero
        terms["rec"] = F.mse_loss(aux["rec"], aux["rec_target"]) if "rec" in aux else zero
        terms["total"] = (cfg.alpha * terms["cc"] + cfg.beta * terms["adv"] + cfg.gamma * terms["rec"]
                          + cfg.delta * terms["sp"])
        return terms

    def train_batch(self, batch: Batch, epoch: int, seed: int) -> Batch:
        """Fresh LNLN missing rates and masks per batch and epoch (or static ones, see config)."""
        if not self.cfg.train_missing:
            return batch.replace(clean=batch)
        return lnln_train_corruption(batch, epoch, seed, self.spec, self.cfg.p_complete,
                                     static=self.cfg.legacy_static_masks, exact_half=self.cfg.exact_half)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """``decay_all``: one group, every parameter decayed (the official optimizer)."""
        if self.cfg.decay_all:
            return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]
        return super().param_groups(weight_decay)
