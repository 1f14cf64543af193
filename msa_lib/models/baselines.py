"""Fusion baselines: text-only, early fusion, late fusion, TFN and a MulT-style model.

All five share one front end: each modality is projected to ``d_model`` and given
sinusoidal positions. Missing-data masks are honoured: with ``use_avail_mask`` the
attention and pooling only see observed elements (``batch.*_avail``); otherwise only
padding is masked and removed elements are seen as the zero/unk vectors they became.

References: TFN -- Zadeh et al., EMNLP 2017; MulT -- Tsai et al., ACL 2019; early and
late fusion (EF-LSTM, LF-DNN) as in the MMSA baselines (Yu et al., 2020/2021).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.batch import Batch
from ..data.spec import MODALITIES, DatasetSpec
from ..layers import CrossModalAttention, TextEncoder, TransformerEncoder, masked_mean, sinusoidal_positions
from .base import ModelOutput, MSAModel, register


@dataclass
class BaselineConfig:
    d_model: int = 64            # width of every hidden representation
    depth: int = 1               # transformer layers per encoder
    heads: int = 4
    dropout: float = 0.1
    text_encoder: str = "features"  # "features", "minilm", or a BERT name/path
    finetune_text: bool = False
    use_avail_mask: bool = True  # attend/pool only over observed elements
    modality_dropout: float = 0.0  # whole-modality dropout during training
    train_missing_rate: float = 0.0  # > 0: whole modalities removed in training with GCNet's keep matrix
    train_missing_rates: tuple = ()  # non-empty: each training sample draws its MR from these, every epoch
    loss: str = "l1"             # "l1" (MMSA default) or "mse"
    tfn_dim: int = 16            # TFN: size of each unimodal vector before the outer product
    aux_weight: float = 0.5      # late fusion: weight of the unimodal losses

    @classmethod
    def preset(cls, name: str) -> "BaselineConfig":
        presets = {
            "synth": cls(),
            "mosi": cls(d_model=64, depth=2, dropout=0.2),
            "mosei": cls(d_model=96, depth=2, dropout=0.1),
            "sims": cls(d_model=64, depth=2, dropout=0.2),
        }
        if name not in presets:
            raise KeyError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]


def head(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """The regression head used by every baseline: (B, in_dim) -> (B, 1)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


class FrontEnd(nn.Module):
    """Project text/audio/vision to (B, L, d_model), add positions, return key masks."""

    def __init__(self, spec: DatasetSpec, cfg: BaselineConfig, modalities=MODALITIES):
        super().__init__()
        d, self.cfg, self.modalities = cfg.d_model, cfg, tuple(modalities)
        self.proj = nn.ModuleDict()
        for m, dim in zip(MODALITIES, spec.dims):
            if m in self.modalities:
                self.proj[m] = (TextEncoder(dim, d, cfg.text_encoder, cfg.finetune_text, spec.unk_token_id)
                                if m == "text" else nn.Linear(dim, d))
        self.norm = nn.ModuleDict({m: nn.LayerNorm(d) for m in self.modalities})
        self.register_buffer("pos", sinusoidal_positions(max(spec.lengths) + 1, d), persistent=False)

    def forward(self, batch: Batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for m in self.modalities:
            if m == "text":
                x = self.proj[m](batch.text, batch.text_mask, batch.text_ids)
            else:
                x = self.proj[m](batch.features(m))
            x = self.norm[m](x) + self.pos[: x.shape[1]]
            key_mask = batch.avail(m) if self.cfg.use_avail_mask else batch.mask(m)
            out[m] = (x, key_mask)                                   # (B, L, d), (B, L)
        return out


class Unimodal(MSAModel):
    """One modality alone: transformer over its sequence, mean-pooled, regressed."""

    modality = "text"

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        self.front = FrontEnd(spec, cfg, modalities=(self.modality,))
        self.encoder = TransformerEncoder(cfg.d_model, cfg.depth, cfg.heads, dropout=cfg.dropout)
        self.head = head(cfg.d_model, cfg.d_model, cfg.dropout)

    def forward(self, batch):
        x, mask = self.front(batch)[self.modality]
        h = masked_mean(self.encoder(x, mask), mask)                 # (B, d)
        return ModelOutput(self.head(h).squeeze(-1), {"h": h})


@register("text_only", BaselineConfig)
class TextOnly(Unimodal):
    modality = "text"


@register("audio_only", BaselineConfig)
class AudioOnly(Unimodal):
    modality = "audio"


@register("vision_only", BaselineConfig)
class VisionOnly(Unimodal):
    modality = "vision"


def resample_to(x: torch.Tensor, src_len: torch.Tensor, dst_len: torch.Tensor, dst_steps: int) -> torch.Tensor:
    """Nearest-in-time resampling of (B, Ls, D) onto ``dst_steps`` slots.

    Slot j of a sample with ``dst_len`` real slots covers the time fraction
    (j + 0.5) / dst_len; it takes the source frame at that fraction of ``src_len``.
    """
    j = torch.arange(dst_steps, device=x.device, dtype=torch.float32)[None, :]
    frac = (j + 0.5) / dst_len.clamp(min=1)[:, None].float()
    idx = (frac * src_len[:, None].float()).long().clamp(max=x.shape[1] - 1).clamp(min=0)  # (B, dst)
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


@register("early_fusion", BaselineConfig)
class EarlyFusion(MSAModel):
    """Concatenate the three modalities at every word slot, then one shared encoder.

    Audio and vision are resampled onto the text positions by relative time, so the
    fused input is (B, Lt, 3 d); masked-out elements enter as zeros.
    """

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        d = cfg.d_model
        self.front = FrontEnd(spec, cfg)
        self.fuse = nn.Linear(3 * d, d)
        self.encoder = TransformerEncoder(d, cfg.depth, cfg.heads, dropout=cfg.dropout)
        self.head = head(d, d, cfg.dropout)

    def forward(self, batch):
        feats = self.front(batch)
        steps, t_len = batch.text.shape[1], batch.text_mask.sum(1)
        slots = []
        for m in MODALITIES:
            x, mask = feats[m]
            x = x * mask.unsqueeze(-1)                               # hide removed elements
            slots.append(x if m == "text" else resample_to(x, batch.mask(m).sum(1), t_len, steps))
        h = self.fuse(torch.cat(slots, dim=-1))                      # (B, Lt, d)
        h = masked_mean(self.encoder(h, batch.text_mask), batch.text_mask)
        return ModelOutput(self.head(h).squeeze(-1), {"h": h})


class UnimodalEncoder(nn.Module):
    """Transformer over one modality, mean-pooled over its key mask: -> (B, d)."""

    def __init__(self, cfg: BaselineConfig):
        super().__init__()
        self.encoder = TransformerEncoder(cfg.d_model, cfg.depth, cfg.heads, dropout=cfg.dropout)

    def forward(self, x, mask):
        return masked_mean(self.encoder(x, mask), mask)


@register("late_fusion", BaselineConfig)
class LateFusion(MSAModel):
    """Decision-level fusion: one predictor per modality, a learned weighted average.

    Weights are a softmax over learned logits restricted to the modalities a sample
    still has, so a removed modality neither votes nor dilutes the others.
    """

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        d = cfg.d_model
        self.front = FrontEnd(spec, cfg)
        self.encoders = nn.ModuleDict({m: UnimodalEncoder(cfg) for m in MODALITIES})
        self.heads = nn.ModuleDict({m: head(d, d, cfg.dropout) for m in MODALITIES})
        self.logits = nn.Parameter(torch.tensor([1.0, 0.0, 0.0]))   # start trusting text more

    def forward(self, batch):
        feats = self.front(batch)
        preds = torch.stack([self.heads[m](self.encoders[m](*feats[m])).squeeze(-1) for m in MODALITIES], 1)
        present = torch.stack([feats[m][1].any(1) for m in MODALITIES], 1)           # (B, 3)
        logits = self.logits.expand_as(preds).masked_fill(~present, float("-inf"))
        weights = torch.nan_to_num(logits.softmax(1), nan=0.0)                        # none present -> 0
        return ModelOutput((weights * preds).sum(1), {"unimodal": preds, "weights": weights, "present": present})

    def representation_module(self):
        return None                       # three unimodal decisions, no shared representation

    def loss(self, batch, out):
        task = self.regression_loss(out.pred, batch.label)
        present = out.aux["present"]
        uni = [self.regression_loss(out.aux["unimodal"][present[:, i], i], batch.label[present[:, i]])
               for i in range(3) if present[:, i].any()]
        aux = torch.stack(uni).mean() if uni else task.new_zeros(())
        return {"task": task, "unimodal": aux, "total": task + self.cfg.aux_weight * aux}


@register("tfn", BaselineConfig)
class TFN(MSAModel):
    """Tensor Fusion Network: outer product of [z_t; 1] x [z_a; 1] x [z_v; 1].

    The appended 1 keeps the unimodal and bimodal terms inside the trimodal tensor
    of size (k + 1)^3 (k = tfn_dim).
    """

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        d, k = cfg.d_model, cfg.tfn_dim
        self.front = FrontEnd(spec, cfg)
        self.encoders = nn.ModuleDict({m: UnimodalEncoder(cfg) for m in MODALITIES})
        self.reduce = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, k), nn.ReLU()) for m in MODALITIES})
        self.head = head((k + 1) ** 3, d, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, batch):
        feats = self.front(batch)
        z = []
        for m in MODALITIES:
            v = self.reduce[m](self.encoders[m](*feats[m]))                           # (B, k)
            z.append(torch.cat([v, torch.ones_like(v[:, :1])], dim=1))                # (B, k+1)
        fusion = torch.einsum("bi,bj,bk->bijk", *z).flatten(1)                        # (B, (k+1)^3)
        return ModelOutput(self.head(self.drop(fusion)).squeeze(-1), {"z": z})


@register("mult", BaselineConfig)
class MulT(MSAModel):
    """MulT-style cross-modal transformer (Tsai et al., 2019), without the CTC module.

    For each target modality, the other two are read through cross-modal attention
    (target queries, source keys/values); the two streams are merged, self-attended,
    pooled, and the three pooled vectors are regressed.
    """

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        d = cfg.d_model
        self.front = FrontEnd(spec, cfg)
        self.cross = nn.ModuleDict({f"{s}->{t}": CrossModalAttention(d, cfg.depth, cfg.heads, dropout=cfg.dropout)
                                    for t in MODALITIES for s in MODALITIES if s != t})
        self.merge = nn.ModuleDict({t: nn.Linear(2 * d, d) for t in MODALITIES})
        self.self_attn = nn.ModuleDict({t: TransformerEncoder(d, cfg.depth, cfg.heads, dropout=cfg.dropout)
                                        for t in MODALITIES})
        self.head = head(3 * d, d, cfg.dropout)
        self.keep_attention = False  # set True to expose cross-modal attention maps in out.aux

    def forward(self, batch):
        feats = self.front(batch)
        pooled, maps = [], {}
        for t in MODALITIES:
            x_t, mask_t = feats[t]
            streams = []
            for s in MODALITIES:
                if s == t:
                    continue
                block = self.cross[f"{s}->{t}"]
                streams.append(block(x_t, feats[s][0], feats[s][1], keep_weights=self.keep_attention))
                if self.keep_attention:
                    maps[f"{s}->{t}"] = block.attention_maps()[-1]                    # (B, h, Lt, Ls)
            h = self.merge[t](torch.cat(streams, dim=-1))                             # (B, L_t, d)
            pooled.append(masked_mean(self.self_attn[t](h, batch.mask(t)), batch.mask(t)))
        h = torch.cat(pooled, dim=-1)                                                 # (B, 3d)
        return ModelOutput(self.head(h).squeeze(-1), {"attention": maps})
