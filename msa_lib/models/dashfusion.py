"""DashFusion: dual-stream alignment with hierarchical bottleneck fusion.

Wen, Li, Zhou, Gao, Wen, Tao and Li, IEEE T-NNLS 36(10), 2025 (arXiv 2512.05515).
Read beside the paper and the official code (github.com/ultramarineX/DashFusion),
whose behaviour this file follows unless a comment says otherwise.

The model, bottom-up:

1. ``TextProjector`` / ``FrameEncoder``: per-modality encoders. Text: precomputed token
   features (or a BERT run on token ids) through a two-layer bias-free projector.
   Audio and vision: linear input layer, a CLS token, a learned positional table and
   a post-norm transformer.
2. ``TemporalAlignment``: the text sequence queries the audio and the vision
   sequences; both read-outs are added to the text stream (the *aligned* sequence Z).
3. Semantic alignment: ``contrastive_loss`` (NT-Xent over explicit positive and
   negative pairs) on the pooled embeddings of each anchor and six *companion*
   training samples found by ``companion_lists`` / ``sample_companions``.
4. ``HierarchicalBottleneckFusion``: a few bottleneck tokens taken from Z gather
   from all three sequences (``MultiCA``) and are read back by each sequence
   (``SubLNBlock``), level by level with 8 -> 4 (-> 2) tokens.
5. Readout: concat(bottleneck token 0, the three sequences' first tokens) -> MLP.

Loss: MSE + weight * contrastive (training only).

Not in the paper, off in the paper presets: ``align_time_codes`` (relative-time codes,
``time_codes``, added to the alignment's queries and keys, so a word can find the frames
at its own relative time; without them the alignment must learn the mapping from data;
on in the ``synth`` preset of chapter 3) and ``text_layers`` (trainable encoder layers
over frozen text features, a stand-in for fine-tuning BERT; off everywhere by default).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.batch import Batch, make_batch
from ..layers import TextEncoder, dropout_bits, masked_mean, sinusoidal_positions
from .base import ModelOutput, MSAModel, register


@dataclass
class DashFusionConfig:
    d_model: int = 128             # width of every hidden representation (official: 128)
    heads: int = 8                 # heads in encoders, HBF blocks and MultiCA (official: 8)
    ff_dim: int = 256              # hidden size of every feed-forward block (official: 256)
    encoder_layers: int = 2        # audio/vision transformer layers (official: 2 MOSI/SIMS, 4 MOSEI)
    encoder_dropout: float = 0.5   # dropout inside the audio/vision transformers (official: the
    #                                constructor default 0.5 shadows the configured 0.1)
    embed_dropout: float = 0.1     # dropout after adding the positional table
    align_time_codes: float = 0.0  # > 0: relative-time codes with this initial gain on the alignment's
    #                                queries and keys (not in the paper; 0 = official)
    text_layers: int = 0           # trainable encoder layers over frozen text features (not in the paper,
    #                                whose BERT is fine-tuned; 0 = official)
    align_heads: int = 8           # temporal-alignment heads (official: 8)
    align_head_dim: int = 32       # temporal-alignment head width (official: 32, inner 256)
    hbf_depth: int = 2             # bottleneck levels (official: 2 MOSI/SIMS -> 8,4; 3 MOSEI -> 8,4,2)
    n_bottleneck: int = 8          # bottleneck tokens at level 0 (official: 8)
    hierarchical: bool = True      # False: every level keeps n_bottleneck tokens (flat bottleneck)
    use_temporal_alignment: bool = True  # False: Z = H_t (no cross-modal read-out into the text)
    use_contrastive: bool = True   # False: no companions, no contrastive term (MSE only)
    con_weight: float = 0.2        # weight of the contrastive term (official: 0.2)
    tau: float = 0.5               # NT-Xent temperature (official: 0.5)
    con_reduction: str = "official"  # "official": mean over all positive pairs, the 12 that have no
    #                                  negatives count as zeros; "active": mean over pairs with negatives
    n_companions_each: int = 2     # companions per list (ss, dd, sd) and anchor (official: 2 -> 6)
    top_k: int = 10                # candidates kept per list (official: 10)
    refresh_every: int = 2         # rebuild the companion lists every this many epochs (official: 2)
    scan_similar: float = 1.0      # fraction of the ranking scanned for ss/sd lists (MOSI 1, MOSEI 1/2, SIMS 1/1.6)
    scan_dissimilar: float = 1.0   # fraction scanned from the least-similar end for dd (MOSI 1, MOSEI 1/8, SIMS 1/2)
    label_mode: str = "round"      # "round": same label = same rounded label (MOSI/MOSEI); "exact" (SIMS)
    faithful_rank_bug: bool = False  # True: store rank positions instead of sample ids, as the official code
    official_masks: bool = False   # True: no padding masks after the encoders, as the official code
    build_unused: bool = False     # True: also build the modules the official code builds but never calls
    #                                (they change only the parameter count, which then equals the official one)
    readout: str = "first"         # "first": concat of bottleneck token 0 and each sequence's first token
    #                                (official; BERT's fine-tuned [CLS] summarises the text); "mean": masked
    #                                means instead (for frozen token features whose [CLS] is no summary)
    text_encoder: str = "features"  # "features" (precomputed token features) or a BERT name/path
    finetune_text: bool = True     # fine-tune a pretrained text encoder (official: yes, same lr)
    loss: str = "mse"              # regression loss (official: MSE)
    modality_dropout: float = 0.0  # whole-modality dropout in training (not in the paper; 0 = off)
    # the official training recipe, read by ``train_config`` (the model itself ignores these)
    lr: float = 5e-5               # AdamW learning rate (official: 5e-5 MOSI/SIMS, 2e-5 MOSEI)
    batch_size: int = 16           # official: 16 MOSI/SIMS, 8 MOSEI
    epochs: int = 100              # official config says 4 (debug state); its comment says 100
    warmup_epochs: float = 10      # linear warm-up length in epochs (official: 10 MOSI/SIMS, 1 MOSEI)
    weight_decay: float = 1e-3     # official: 1e-3
    official_decay_groups: bool = False  # True: no decay only for names with "bias" or "LayerNorm.weight"
    #                                (BERT's norms; the official rule); False: matrices only
    select_from: int = 1           # first selectable epoch, 0-based (official: validation MAE from epoch 2)
    recipe: str = "book"           # "official" in the paper presets: the official run's switches below

    OFFICIAL = dict(recipe="official", encoder_dropout=0.5, official_masks=True, faithful_rank_bug=True,
                    build_unused=True, official_decay_groups=True, con_reduction="official", readout="first",
                    align_time_codes=0.0, text_layers=0, modality_dropout=0.0, finetune_text=True,
                    select_from=1)

    @classmethod
    def preset(cls, name: str) -> "DashFusionConfig":
        presets = {
            # official src/config.py (see specs/dashfusion.md section 5)
            # text: BERT fine-tuned on the token ids (the official code re-tokenises raw_text to 128
            # tokens; we read MMSA's text_bert ids, 50 / 39 tokens)
            "mosi": cls(text_encoder="bert-base-uncased", **cls.OFFICIAL),
            "mosei": cls(encoder_layers=4, hbf_depth=3, lr=2e-5, batch_size=8, epochs=25, warmup_epochs=1,
                         scan_similar=0.5, scan_dissimilar=0.125, text_encoder="bert-base-uncased", **cls.OFFICIAL),
            "sims": cls(label_mode="exact", scan_similar=1 / 1.6, scan_dissimilar=0.5,
                        text_encoder="bert-base-chinese", **cls.OFFICIAL),
            # SynthMSA on a CPU (chapter 3), not from the paper: small and cheap -- one encoder layer,
            # 2 heads, no encoder dropout, ONE companion per list (3 per anchor, not 6), and a
            # masked-mean readout (SynthMSA's frozen MiniLM features have no trained [CLS] summary)
            "synth": cls(d_model=32, heads=2, ff_dim=64, encoder_layers=1, encoder_dropout=0.0,
                         align_heads=2, align_head_dim=16, n_companions_each=1, readout="mean",
                         align_time_codes=4.0,
                         lr=2e-3, batch_size=64, epochs=8, warmup_epochs=0.8, weight_decay=1e-4, select_from=0),
        }
        if name not in presets:
            raise KeyError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]

    def train_config(self, **overrides):
        """The trainer settings of this preset: AdamW, linear warm-up then linear decay, no clipping."""
        from ..train import TrainConfig
        kw = dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                  schedule="linear", warmup=min(1.0, self.warmup_epochs / max(1, self.epochs)),
                  grad_clip=None, select_on="MAE", select_from=self.select_from)
        kw.update(overrides)
        return TrainConfig(**kw)


# ---------------------------------------------------------------------------------------------
# 0. Attention helpers
# ---------------------------------------------------------------------------------------------

LONG_ATTENTION = 128 * 128  # query-key pairs above which encoders use the fused kernel


def attend(q, k, v, scale: float, key_mask=None, dropout=None, need_weights: bool = True):
    """softmax(q k^T * scale) v for (B, h, Lq, hd) heads; key_mask (B, Lk) True = may attend.

    Returns the output (B, h, Lq, hd) and the weights (B, h, Lq, Lk). Every key mask
    used here has at least one True (the CLS token or the first word). Without
    ``need_weights`` (the encoders) a long sequence (MOSI's 375/500 frames) goes through
    ``F.scaled_dot_product_attention`` (weights: None) when no dropout is active or on a GPU;
    with dropout on a CPU, the plain computation with ``dropout_bits`` (same distribution as
    torch's dropout, a quarter of its time on these maps).
    """
    if not need_weights and q.shape[-2] * k.shape[-2] > LONG_ATTENTION:
        p = dropout.p if isinstance(dropout, nn.Dropout) and dropout.training else 0.0
        if p == 0.0 or q.is_cuda:
            mask = None if key_mask is None else key_mask[:, None, None, :]
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=scale), None
        # CPU with dropout: torch would compute this plainly too, drawing one random number per weight;
        # the key mask enters as an additive bias (-inf on pads), which costs no copy of the scores
        B, h, Lq, hd = q.shape
        Lk = k.shape[-2]
        bias = q.new_zeros(B, 1, 1, Lk)
        if key_mask is not None:
            bias = bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        scores = torch.baddbmm(bias.expand(B, h, 1, Lk).reshape(B * h, 1, Lk), q.reshape(B * h, Lq, hd),
                               k.reshape(B * h, Lk, hd).transpose(1, 2), alpha=scale)  # (B h, Lq, Lk)
        return dropout_bits(scores.view(B, h, Lq, Lk).softmax(-1), p) @ v, None
    scores = q @ k.transpose(-2, -1) * scale                                        # (B, h, Lq, Lk)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    w = scores.softmax(-1)
    return (w if dropout is None else dropout(w)) @ v, w


def split_heads(x, heads: int):
    B, L, D = x.shape
    return x.view(B, L, heads, D // heads).transpose(1, 2)                          # (B, h, L, hd)


def merge_heads(x):
    B, h, L, hd = x.shape
    return x.transpose(1, 2).reshape(B, L, h * hd)                                  # (B, L, h*hd)


class FeedForward(nn.Sequential):
    """Linear, GELU, dropout (torch's encoder layer has one here), Linear: (..., d) -> (..., d)."""

    def __init__(self, d: int, hidden: int, dropout: float = 0.0):
        super().__init__(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout) if dropout else nn.Identity(),
                         nn.Linear(hidden, d))


# ---------------------------------------------------------------------------------------------
# 1. Unimodal encoders
# ---------------------------------------------------------------------------------------------

class TextProjector(nn.Module):
    """Token features (B, Lt, Din) -> (B, Lt, d): Linear, GELU, Linear, GELU, LayerNorm (no biases)."""

    def __init__(self, in_dim: int, d: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, d, bias=False), nn.GELU(),
                                 nn.Linear(d, d, bias=False), nn.GELU(), nn.LayerNorm(d))

    def forward(self, x):
        return self.net(x)


class EncoderLayer(nn.Module):
    """Post-norm transformer layer with GELU, as torch's ``TransformerEncoderLayer``
    (same parameters: fused Q/K/V with bias, output projection, FFN, two LayerNorms).

    Written out because torch's fused CPU attention kernel is slow for the tiny heads
    of the synth preset; dropout on the attention weights, as torch's layer does.
    """

    def __init__(self, cfg: DashFusionConfig):
        super().__init__()
        d, self.h = cfg.d_model, cfg.heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ff = FeedForward(d, cfg.ff_dim, cfg.encoder_dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.encoder_dropout) if cfg.encoder_dropout else nn.Identity()
        self.scale = 1.0 / math.sqrt(d // cfg.heads)

    def forward(self, x, key_mask):
        q, k, v = (split_heads(t, self.h) for t in self.qkv(x).chunk(3, dim=-1))  # (B, h, L, hd) each
        o, _ = attend(q, k, v, self.scale, key_mask, self.drop, need_weights=False)
        x = self.norm1(x + self.drop(self.out(merge_heads(o))))                      # post-norm
        return self.norm2(x + self.drop(self.ff(x)))


class FrameEncoder(nn.Module):
    """Audio or vision frames (B, L, Din) -> sequence (B, L+1, d) with a CLS token first.

    Post-norm transformer with a key padding mask; the CLS vector starts at ones and
    the positional table (L+1 rows) at zeros, as in the official code. Pads are
    zeroed after the final LayerNorm. (The official module also owns an unused input
    Linear and an unused d x d Linear; built only with ``build_unused``.)
    """

    def __init__(self, in_dim: int, length: int, cfg: DashFusionConfig):
        super().__init__()
        d = cfg.d_model
        self.inp = nn.Linear(in_dim, d)
        self.cls = nn.Parameter(torch.ones(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, length + 1, d))
        self.drop = nn.Dropout(cfg.embed_dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.norm = nn.LayerNorm(d)
        if cfg.build_unused:  # official: an input Linear and a d x d Linear that forward never uses
            self.unused = nn.ModuleList([nn.Linear(in_dim, d), nn.Linear(d, d)])

    def forward(self, x, mask):
        """x: (B, L, Din); mask: (B, L) True = real frame. Returns (B, L+1, d), mask (B, L+1)."""
        B, L, _ = x.shape
        h = torch.cat([self.cls.expand(B, -1, -1), self.inp(x)], dim=1)            # (B, L+1, d)
        h = self.drop(h + self.pos[:, : L + 1])
        mask = torch.cat([mask.new_ones(B, 1), mask], dim=1)                        # (B, L+1), CLS is real
        for layer in self.layers:
            h = layer(h, mask)
        return self.norm(h) * mask.unsqueeze(-1), mask


# ---------------------------------------------------------------------------------------------
# 2. Temporal alignment
# ---------------------------------------------------------------------------------------------

def relative_times(mask: torch.Tensor, cls: bool = False) -> torch.Tensor:
    """(B, L) padding mask -> (B, L) time of each position as a fraction of the clip, (i + 0.5) / n.

    With ``cls`` a CLS column is prepended; it gets time -1 (no time code): (B, L+1)."""
    if cls:
        t = relative_times(mask)
        return torch.cat([t.new_full((t.shape[0], 1), -1.0), t], dim=1)
    n = mask.sum(1, keepdim=True).clamp(min=1).float()
    return (torch.arange(mask.shape[1], device=mask.device).float() + 0.5) / n


def time_codes(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, L) relative times -> (B, L, dim) codes [sin pi f t, cos pi f t], f = 1..dim/2
    (no wrap-around on [0, 1]), scaled so code(t) . code(t) = 1; code(t) . code(t') peaks
    at t = t'. Time -1 (a CLS token) -> zeros."""
    f = torch.arange(1, dim // 2 + 1, device=t.device).float()
    ang = math.pi * t.unsqueeze(-1) * f                                          # (B, L, dim/2)
    code = torch.cat([ang.sin(), ang.cos()], dim=-1) / math.sqrt(dim // 2)
    return code * (t >= 0).unsqueeze(-1)


class TemporalAlignment(nn.Module):
    """Z = H_t + W_o (Attn(H_t -> H_a) + Attn(H_t -> H_v)).

    Bias-free query/key/value projections to ``align_heads x align_head_dim``, scale
    1/sqrt(head_dim). (The official block also builds an FFN and two LayerNorms that it
    never calls; built only with ``build_unused``.)
    """

    def __init__(self, cfg: DashFusionConfig):
        super().__init__()
        d, self.h, hd = cfg.d_model, cfg.align_heads, cfg.align_head_dim
        inner = self.h * hd
        self.q = nn.Linear(d, inner, bias=False)
        self.k = nn.ModuleDict({m: nn.Linear(d, inner, bias=False) for m in ("audio", "vision")})
        self.v = nn.ModuleDict({m: nn.Linear(d, inner, bias=False) for m in ("audio", "vision")})
        self.out = nn.Linear(inner, d)
        if cfg.build_unused:  # official: an FFN and two LayerNorms that forward never uses
            self.unused = nn.ModuleList([FeedForward(d, d), nn.LayerNorm(d), nn.LayerNorm(d)])
        self.scale = 1.0 / math.sqrt(hd)
        self.hd = hd
        self.time_gain = None                                                       # (h, 1, 1) gains when on
        if cfg.align_time_codes:
            self.time_gain = nn.Parameter(torch.full((self.h, 1, 1), cfg.align_time_codes))

    def forward(self, h_t, seqs: dict, masks: dict, times: dict | None = None):
        """h_t: (B, Lt, d); seqs[m]: (B, Lm+1, d); masks[m]: (B, Lm+1) or None. -> Z, maps.

        times[m]: (B, L) relative time in [0, 1] of each position (CLS: -1), used when
        ``align_time_codes`` is on."""
        q = split_heads(self.q(h_t), self.h)                                        # (B, h, Lt, hd)
        if self.time_gain is not None:
            q = q + self.time_gain * time_codes(times["text"], self.hd).unsqueeze(1)
        total, maps = 0.0, {}
        for m in ("audio", "vision"):
            k = split_heads(self.k[m](seqs[m]), self.h)
            if self.time_gain is not None:
                k = k + self.time_gain * time_codes(times[m], self.hd).unsqueeze(1)
            o, maps[m] = attend(q, k, split_heads(self.v[m](seqs[m]), self.h), self.scale, masks[m],
                                need_weights=not self.training)                   # maps: None in training
            total = total + merge_heads(o)                                           # (B, Lt, inner)
        return h_t + self.out(total), maps


# ---------------------------------------------------------------------------------------------
# 3. Semantic alignment: companion retrieval and the contrastive loss
# ---------------------------------------------------------------------------------------------

def label_classes(label: np.ndarray, mode: str) -> np.ndarray:
    """What "same label" means: rounded labels (MOSI/MOSEI, 7 classes) or exact ones (SIMS)."""
    if mode == "round":
        return np.round(label).astype(np.int64)          # NumPy rounds half to even, as the official code
    if mode == "exact":
        return np.round(np.asarray(label, np.float64) * 1000).astype(np.int64)  # exact on the label grid
    raise ValueError(f"label_mode must be 'round' or 'exact', got {mode!r}")


def _first_true(cond: np.ndarray, values: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the first ``top`` entries of ``values`` where ``cond`` holds (padded with -1)."""
    pos = np.argsort(~cond, axis=1, kind="stable")[:, :top]                          # (R, <= top)
    ok = np.take_along_axis(cond, pos, 1)
    found = np.full((len(cond), top), -1, np.int64)                                  # a window may be < top
    found[:, : pos.shape[1]] = np.where(ok, np.take_along_axis(values, pos, 1), -1)
    return found, ok.sum(1)


def companion_lists(emb: torch.Tensor, classes: np.ndarray, top: int = 10, scan_similar: float = 1.0,
                    scan_dissimilar: float = 1.0, faithful_rank_bug: bool = False,
                    chunk: int = 1024) -> dict[str, np.ndarray]:
    """Candidate lists per training sample from pooled embeddings ``emb`` (N, D).

    Rows are ranked by cosine similarity, most similar first. ``ss``: similar and same
    label (scanned over the first ``scan_similar`` share of the ranking); ``sd``: similar,
    different label (same window); ``dd``: dissimilar, different label (scanned from
    the least-similar end over ``scan_dissimilar``). Each keeps its first ``top`` hits:
    arrays (N, top) of sample ids, -1 where a row had fewer hits; a row with no hit at
    all falls back to the nearest (ss, sd) or farthest (dd) other samples.

    faithful_rank_bug: store the *rank position* j instead of the sample id found at
    rank j, and skip the entry whose rank position equals the anchor's id (instead of
    the anchor itself) -- what the official code (inherited from ConFEDE) does.
    """
    n = emb.shape[0]
    z = F.normalize(emb.float(), dim=-1)
    w_sim = max(1, int(n * scan_similar))
    w_dis = max(1, int(n * scan_dissimilar))
    out = {k: np.full((n, top), -1, np.int64) for k in ("ss", "sd", "dd")}
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        order = torch.argsort(z[rows] @ z.T, dim=1, descending=True).cpu().numpy()  # (R, N) ids by rank
        rank = np.broadcast_to(np.arange(n), order.shape)                             # rank positions
        stored = rank if faithful_rank_bug else order
        not_self = stored != rows[:, None]
        same = classes[order] == classes[rows][:, None]                              # (R, N)
        win_s, win_d = slice(0, w_sim), slice(n - w_dis, n)
        lists = {
            "ss": (same & not_self)[:, win_s],
            "sd": (~same & not_self)[:, win_s],
            "dd": (~same & not_self)[:, win_d][:, ::-1],                            # least similar first
        }
        for key, cond in lists.items():
            vals = stored[:, win_s] if key != "dd" else stored[:, win_d][:, ::-1]
            ids, count = _first_true(cond, vals, top)
            empty = count == 0                                                       # fall back to any label
            if empty.any():
                anyone = (not_self[:, win_s] if key != "dd" else not_self[:, win_d][:, ::-1])[empty]
                ids[empty] = _first_true(anyone, vals[empty], top)[0]
            out[key][rows] = ids
    return out


def sample_companions(lists: dict[str, np.ndarray], anchors: np.ndarray, n_each: int,
                      rng: np.random.Generator) -> np.ndarray:
    """(B,) anchor ids -> (B, 3 * n_each) companion ids: n_each from ss, then dd, then sd.

    Draws without replacement from the valid entries of each list (with replacement
    when a list holds fewer than n_each).
    """
    picks = []
    for key in ("ss", "dd", "sd"):
        cand = lists[key][anchors]                                                   # (B, top)
        valid = cand >= 0
        keys = np.where(valid, rng.random(cand.shape), np.inf)
        perm = np.argsort(keys, axis=1)                                              # valid entries first, shuffled
        count = np.maximum(valid.sum(1, keepdims=True), 1)
        cols = np.take_along_axis(perm, np.arange(n_each)[None, :] % count, 1)       # (B, n_each)
        picks.append(np.take_along_axis(cand, cols, 1))
    return np.concatenate(picks, axis=1)


def contrastive_pairs(n_each: int = 2):
    """Explicit (anchor row, other row) pairs of DashFusion's per-anchor matrix.

    Rows: four groups (T, V, A, F) of S = 1 + 3 n_each samples each, ordered
    [anchor, ss..., dd..., sd...]; row = group * S + k. Positives: (T_k, V_k) and
    (T_k, A_k) for every sample k (semantic alignment) and (X_0, X_ss) for every group X
    (supervised contrastive). Negatives: (X_0, X_dd) and (X_0, X_sd).
    """
    S = 1 + 3 * n_each
    T, V, A, Fg = 0, S, 2 * S, 3 * S
    pos = [(T + k, V + k) for k in range(S)] + [(T + k, A + k) for k in range(S)]
    pos += [(g, g + k) for g in (T, V, A, Fg) for k in range(1, n_each + 1)]
    neg = [(g, g + k) for g in (T, V, A, Fg) for k in range(n_each + 1, S)]
    return pos, neg


def contrastive_loss(emb: torch.Tensor, pos, neg, tau: float = 0.5, reduction: str = "official") -> torch.Tensor:
    """NT-Xent over explicit pairs, vectorised over anchors; emb: (B, R, D) -> scalar.

    For a positive pair (u, p), with N(u) the negatives whose anchor row is exactly u,
        l(u, p) = -log exp(s_up / tau) / (exp(s_up / tau) + sum_{n in N(u)} exp(s_un / tau)),
    s = cosine similarity. A pair whose anchor has no negatives gives exactly 0.
    reduction "official": mean over all positive pairs (zeros included), as
    pytorch-metric-learning's MeanReducer does in the official code; "active": mean over
    the pairs whose anchor has negatives. The batch loss is the mean over anchors.
    """
    z = F.normalize(emb, dim=-1)
    sim = z @ z.transpose(1, 2) / tau                                               # (B, R, R)
    R = emb.shape[1]
    neg_mask = torch.zeros(R, R, dtype=torch.bool, device=emb.device)
    for a, n in neg:
        neg_mask[a, n] = True
    pa = torch.tensor([a for a, _ in pos], device=emb.device)
    pp = torch.tensor([p for _, p in pos], device=emb.device)
    s_pos = sim[:, pa, pp]                                                           # (B, P)
    s_neg = sim[:, pa, :].masked_fill(~neg_mask[pa][None], float("-inf"))          # (B, P, R)
    denom = torch.logsumexp(torch.cat([s_pos.unsqueeze(-1), s_neg], dim=-1), dim=-1)  # (B, P)
    per_pair = denom - s_pos                                                         # (B, P), >= 0
    if reduction == "official":
        return per_pair.mean()
    if reduction == "active":
        active = neg_mask[pa].any(1)
        return per_pair[:, active].mean()
    raise ValueError(f"con_reduction must be 'official' or 'active', got {reduction!r}")


# ---------------------------------------------------------------------------------------------
# 4. Hierarchical bottleneck fusion
# ---------------------------------------------------------------------------------------------

class SubLNBlock(nn.Module):
    """One attention + FFN layer with the official residual style x <- x + LN(f(x)).

    Q/K/V with bias, ``heads`` heads of d/heads dims but the score scale is
    1/sqrt(d) (the full width), no output projection. With ``context`` it is the
    CrossBlock (a sequence reads the bottleneck tokens), without it the SelfBlock.
    """

    def __init__(self, cfg: DashFusionConfig):
        super().__init__()
        d, self.h = cfg.d_model, cfg.heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = FeedForward(d, cfg.ff_dim)
        self.scale = 1.0 / math.sqrt(d)

    def forward(self, x, context=None, key_mask=None):
        """x: (B, L, d); context: (B, Lk, d) or None (= x); key_mask: (B, Lk) or None."""
        kv = x if context is None else context
        o, _ = attend(split_heads(self.q(x), self.h), split_heads(self.k(kv), self.h),
                      split_heads(self.v(kv), self.h), self.scale, key_mask)
        x = x + self.norm1(merge_heads(o))                                           # (B, L, d)
        return x + self.norm2(self.ff(x))


class MultiCA(nn.Module):
    """Bottleneck tokens Q (B, k, d) gather from the text, audio and vision sequences.

    One bias-free query projection shared by three attentions (bias-free keys and
    values per modality), scale 1/sqrt(head dim), no output projection;
    U = LN1(Q + O_t + O_a + O_v), U = LN2(U + FFN(U)) (standard post-norm).
    """

    def __init__(self, cfg: DashFusionConfig):
        super().__init__()
        d, self.h = cfg.d_model, cfg.heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.ModuleDict({m: nn.Linear(d, d, bias=False) for m in ("text", "audio", "vision")})
        self.v = nn.ModuleDict({m: nn.Linear(d, d, bias=False) for m in ("text", "audio", "vision")})
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = FeedForward(d, cfg.ff_dim)
        self.scale = 1.0 / math.sqrt(d // cfg.heads)

    def forward(self, q_tokens, seqs: dict, masks: dict):
        q = split_heads(self.q(q_tokens), self.h)                                   # (B, h, k, hd)
        u, maps = q_tokens, {}
        for m, x in seqs.items():
            o, maps[m] = attend(q, split_heads(self.k[m](x), self.h), split_heads(self.v[m](x), self.h),
                                self.scale, masks[m])                                # maps[m]: (B, h, k, Lm)
            u = u + merge_heads(o)
        u = self.norm1(u)
        return self.norm2(u + self.ff(u)), maps


def bottleneck_sizes(n0: int, depth: int, hierarchical: bool = True) -> list[int]:
    """Tokens kept at each level: 8, 4, 2, ... (halved, at least 1) or n0 at every level (flat)."""
    return [max(1, n0 // 2 ** lvl) if hierarchical else n0 for lvl in range(depth)]


class HierarchicalBottleneckFusion(nn.Module):
    """Per level l: Q <- SelfBlock(Z or Q)[:, :k_l]; Q <- MultiCA(Q; M_t, M_a, M_v);
    M_m <- CrossBlock_m(M_m; Q) for every modality m.

    The bottleneck tokens are the first k_l positions of the aligned sequence after it
    has self-attended (not separate learned parameters), as in the official code.
    """

    def __init__(self, cfg: DashFusionConfig):
        super().__init__()
        self.sizes = bottleneck_sizes(cfg.n_bottleneck, cfg.hbf_depth, cfg.hierarchical)
        self.self_blocks = nn.ModuleList(SubLNBlock(cfg) for _ in self.sizes)
        self.gather = nn.ModuleList(MultiCA(cfg) for _ in self.sizes)
        self.read_back = nn.ModuleList(nn.ModuleDict({m: SubLNBlock(cfg) for m in ("text", "audio", "vision")})
                                       for _ in self.sizes)

    def forward(self, z, seqs: dict, masks: dict, z_mask=None):
        """z: (B, Lt, d) aligned text; seqs[m]: (B, Lm, d); masks[m]: (B, Lm) or None."""
        q, seqs, maps = z, dict(seqs), []
        for lvl, k in enumerate(self.sizes):
            q = self.self_blocks[lvl](q, key_mask=z_mask if lvl == 0 else None)[:, :k]   # (B, k, d)
            q, level_maps = self.gather[lvl](q, seqs, masks)                           # (B, k, d)
            seqs = {m: self.read_back[lvl][m](x, context=q) for m, x in seqs.items()}
            maps.append(level_maps)
        return q, seqs, maps


# ---------------------------------------------------------------------------------------------
# 5. The model
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def alignment_entropy(model: "DashFusion", batch: Batch) -> dict:
    """How spread out the temporal-alignment attention is: for each modality, the entropy of
    each real word's attention over the real frames (and CLS), divided by log(#keys),
    averaged over words and clips. 1 = uniform (no idea when to look), 0 = one frame."""
    was = model.training
    model.eval()
    maps = model(batch).aux["ta_attention"]
    model.train(was)
    out = {}
    for m, w in maps.items():
        w = w.mean(1)                                                                # (B, Lt, Lm+1)
        keys = torch.cat([torch.ones_like(batch.mask(m)[:, :1]), batch.mask(m)], 1).float()
        rel = -(w.clamp_min(1e-12).log() * w).sum(-1) / keys.sum(1, keepdim=True).log()   # (B, Lt)
        tm = batch.text_mask.float()
        out[m] = float((rel * tm).sum() / tm.sum())
    return out


def _cat_encoder_inputs(a: Batch, b: Batch) -> Batch:
    """The inputs ``encode`` reads, of batch ``a`` then batch ``b`` (other fields keep ``a``'s)."""
    keys = ["text", "text_mask", "audio", "audio_mask", "audio_avail", "vision", "vision_mask", "vision_avail"]
    if a.text_ids is not None and b.text_ids is not None:
        keys.append("text_ids")
    return a.replace(**{k: torch.cat([getattr(a, k), getattr(b, k)]) for k in keys})


def _trim_padding(batch: Batch, min_text: int) -> Batch:
    """Cut each modality to the longest real sequence of the batch (padding beyond it is
    masked in every attention and pooling, so nothing changes but the amount of work).
    The text keeps at least ``min_text`` positions: the first ones seed the bottleneck."""
    changes = {}
    for m in ("text", "audio", "vision"):
        n = int(batch.mask(m).sum(1).max())
        n = max(n, min_text) if m == "text" else n
        changes.update({k: getattr(batch, k)[:, :n] for k in (m, f"{m}_mask", f"{m}_avail")})
    if batch.text_ids is not None:
        changes["text_ids"] = batch.text_ids[:, :changes["text"].shape[1]]
    return batch.replace(**changes)


def _rows(x, rows: slice):
    """The same rows of every tensor in a (nested) dict of encoder outputs."""
    if isinstance(x, dict):
        return {k: _rows(v, rows) for k, v in x.items()}
    return None if x is None else x[rows]


@register("dashfusion", DashFusionConfig)
class DashFusion(MSAModel):
    """Encoders -> temporal alignment -> hierarchical bottleneck fusion -> MLP.

    In training, ``6 B`` companion samples (found by ``on_epoch_start``) also pass
    through the encoders and the temporal alignment for the contrastive loss.
    Masks: text uses its padding mask; audio/vision use their availability masks
    (a removed frame is a zero frame, and the official code treats zero frames as
    padding). ``official_masks=False`` (default) also applies these masks in the
    alignment and the fusion; ``True`` attends over pads there, as the official code.
    In training (not with ``official_masks``) each batch is cut to its longest real
    sequences first: the pads cost time and change nothing.
    """

    def __init__(self, spec, cfg: DashFusionConfig):
        super().__init__(spec, cfg)
        d = cfg.d_model
        if cfg.text_encoder == "features":
            self.text = TextProjector(spec.dims[0], d)
        else:  # a pretrained LM; its own projection is replaced by DashFusion's projector
            self.text = TextEncoder(spec.dims[0], d, cfg.text_encoder, cfg.finetune_text, spec.unk_token_id)
            self.text.proj = TextProjector(self.text.proj.in_features, d)
        self.text_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.text_layers))
        if cfg.text_layers:
            self.register_buffer("text_pos", sinusoidal_positions(spec.lengths[0], d), persistent=False)
        self.audio = FrameEncoder(spec.dims[1], spec.lengths[1], cfg)
        self.vision = FrameEncoder(spec.dims[2], spec.lengths[2], cfg)
        self.align = TemporalAlignment(cfg) if cfg.use_temporal_alignment else None
        self.fusion = HierarchicalBottleneckFusion(cfg)
        self.head = nn.Sequential(nn.Linear(4 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d), nn.GELU(),
                                  nn.Linear(d, 1))
        self.pairs = contrastive_pairs(cfg.n_companions_each)
        self._train_split, self._lists, self._rng = None, None, None

    # -- encoders + temporal alignment (shared by anchors and companions) ------------------
    def encode(self, batch: Batch) -> dict:
        """Sequences, masks, pooled embeddings t/a/v, aligned Z and its first token f."""
        cfg = self.cfg
        if self.training and not cfg.official_masks:
            batch = _trim_padding(batch, cfg.n_bottleneck)  # same result, less work (pads are masked)
        t_mask = batch.text_mask
        if cfg.text_encoder == "features":
            h_t = self.text(batch.text)
        else:
            h_t = self.text(batch.text, t_mask, batch.text_ids)
        if len(self.text_layers):
            h_t = h_t + self.text_pos[: h_t.shape[1]]
            for layer in self.text_layers:
                h_t = layer(h_t, t_mask)
        h_t = h_t * t_mask.unsqueeze(-1)                                            # (B, Lt, d), pads zeroed
        h_a, a_mask = self.audio(batch.audio, batch.audio_avail)                     # (B, La+1, d)
        h_v, v_mask = self.vision(batch.vision, batch.vision_avail)                  # (B, Lv+1, d)
        seqs = {"text": h_t, "audio": h_a, "vision": h_v}
        masks = {"text": t_mask, "audio": a_mask, "vision": v_mask}
        att_masks = {m: None for m in masks} if cfg.official_masks else masks
        if self.align is not None:
            times = {"text": relative_times(t_mask), "audio": relative_times(batch.audio_mask, cls=True),
                     "vision": relative_times(batch.vision_mask, cls=True)}
            z, ta_maps = self.align(h_t, seqs, att_masks, times)                         # (B, Lt, d)
        else:  # ablation: the text stream passes unchanged
            z, ta_maps = h_t, {}
        pooled = {m[0]: masked_mean(seqs[m], masks[m]) for m in seqs}               # (B, d) each, CLS included
        return {"seqs": seqs, "masks": masks, "att_masks": att_masks, "z": z, "f": z[:, 0],
                "ta_maps": ta_maps, **pooled}

    def forward(self, batch: Batch) -> ModelOutput:
        comp = None
        if self.training and self.cfg.use_contrastive and self._lists is None:
            raise RuntimeError("DashFusion trains with companions: call model.on_epoch_start(epoch, train_split, "
                               "device, seed) before each training epoch (msa_lib.train.fit does), or build it "
                               "with use_contrastive=False")
        if self.training and self.cfg.use_contrastive:
            comp = sample_companions(self._lists, batch.index.cpu().numpy(), self.cfg.n_companions_each,
                                     self._rng)                                      # (B, 3c) train ids
            cb = make_batch(self._train_split, comp.reshape(-1)).to(batch.label.device)
            both = self.encode(_cat_encoder_inputs(batch, cb))  # one pass over anchors + companions
            B = len(batch)
            enc, c_enc = _rows(both, slice(0, B)), _rows(both, slice(B, None))
        else:
            enc = self.encode(batch)
        q, seqs, hbf_maps = self.fusion(enc["z"], enc["seqs"], enc["att_masks"], enc["att_masks"]["text"])
        if self.cfg.readout == "first":
            h = torch.cat([q[:, 0], seqs["text"][:, 0], seqs["audio"][:, 0], seqs["vision"][:, 0]], dim=-1)  # (B, 4d)
        elif self.cfg.readout == "mean":
            h = torch.cat([q.mean(1)] + [masked_mean(seqs[m], enc["masks"][m]) for m in ("text", "audio", "vision")],
                          dim=-1)                                                    # (B, 4d)
        else:
            raise ValueError(f"readout must be 'first' or 'mean', got {self.cfg.readout!r}")
        pred = self.head(h).squeeze(-1)                                              # (B,)
        # ta_attention: (B, h, Lt, Lm+1), col 0 = CLS (on long sequences not kept in training)
        aux = {"ta_attention": {m: w.detach() for m, w in enc["ta_maps"].items() if w is not None},
               "bottleneck_attention": [{m: w.detach() for m, w in lv.items()} for lv in hbf_maps],  # (B, h, k_l, Lm)
               "bottleneck_sizes": list(self.fusion.sizes),
               "t": enc["t"], "a": enc["a"], "v": enc["v"], "f": enc["f"], "fused": h}
        if comp is not None:
            aux["contrastive"] = self.companion_loss(enc, c_enc, comp.shape[1])
            aux["companions"] = torch.from_numpy(comp)
        return ModelOutput(pred, aux)

    # -- semantic alignment ----------------------------------------------------------------
    def companion_loss(self, enc: dict, c_enc: dict, n_comp: int):
        """NT-Xent over the T, V, A, F groups: each anchor (enc) with its ``n_comp`` companions
        (c_enc, rows grouped by anchor). Returns the scalar loss."""
        groups = []
        for key in ("t", "v", "a", "f"):                                            # T, V, A, F groups
            B, d = enc[key].shape
            groups.append(torch.cat([enc[key].unsqueeze(1), c_enc[key].view(B, n_comp, d)], dim=1))  # (B, 1+C, d)
        emb = torch.cat(groups, dim=1)                                               # (B, 4 (1+C), d)
        pos, neg = self.pairs
        return contrastive_loss(emb, pos, neg, self.cfg.tau, self.cfg.con_reduction)

    @torch.no_grad()
    def embed_split(self, split, device, batch_size: int = 256) -> torch.Tensor:
        """Pooled [t; v; a] (N, 3d) of a whole split in eval mode (for companion retrieval)."""
        was = self.training
        self.eval()
        out = []
        for start in range(0, len(split), batch_size):
            e = self.encode(make_batch(split, np.arange(start, min(len(split), start + batch_size))).to(device))
            out.append(torch.cat([e["t"], e["v"], e["a"]], dim=-1).cpu())
        self.train(was)
        return torch.cat(out)

    def refresh_companions(self, split, device) -> None:
        cfg = self.cfg
        classes = label_classes(split.label, cfg.label_mode)
        self._lists = companion_lists(self.embed_split(split, device), classes, cfg.top_k, cfg.scan_similar,
                                      cfg.scan_dissimilar, cfg.faithful_rank_bug)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """``official_decay_groups``: no decay only where the name holds "bias" or "LayerNorm.weight"
        (BERT's norms); DashFusion's own LayerNorms are decayed, as in the official optimizer."""
        if not self.cfg.official_decay_groups:
            return super().param_groups(weight_decay)
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (no_decay if "bias" in name or "LayerNorm.weight" in name else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def on_epoch_start(self, epoch: int, train_split, device, seed: int = 0) -> None:
        """Keep the train split; rebuild the companion lists every ``refresh_every`` epochs
        (official: before epochs 1, 3, 5, ... counted from 1, i.e. 0, 2, 4, ... here)."""
        if not self.cfg.use_contrastive:
            return
        changed = self._train_split is not train_split
        self._train_split = train_split
        self._rng = np.random.default_rng([seed, epoch, len(train_split)])   # each run draws its own
        if changed or self._lists is None or epoch % self.cfg.refresh_every == 0:
            self.refresh_companions(train_split, device)

    def loss(self, batch, out):
        task = self.regression_loss(out.pred, batch.label)
        terms = {"task": task}
        total = task
        if "contrastive" in out.aux:
            terms["contrastive"] = out.aux["contrastive"]
            total = task + self.cfg.con_weight * out.aux["contrastive"]
        terms["total"] = total
        return terms
