"""MulT's transformer blocks (Tsai et al., ACL 2019; fairseq-style), shared by HME and CyIN.

Batch-first everywhere: (B, L, d). A layer is pre-norm; in a cross-modal layer the query
sequence reads a context sequence, both normalised by the same LayerNorm (as in MulT).
``causal`` masks the future (MulT's ``attn_mask=True``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def padded_sinusoids(x: torch.Tensor) -> torch.Tensor:
    """fairseq-style positions for (B, L, d): a frame whose channel 0 is exactly 0 counts as
    padding and gets no position; the others get 1, 2, ... (sin half, cos half) -> (B, L, d).
    So an all-zero (missing) sequence stays all-zero at the encoder's input."""
    d = x.shape[-1]
    real = x[..., 0] != 0                                                          # (B, L)
    pos = (torch.cumsum(real, dim=1) * real).float()                               # 0 at padding
    half = d // 2
    freq = torch.exp(torch.arange(half, device=x.device) * -(math.log(10000.0) / max(1, half - 1)))
    angles = pos[..., None] * freq                                                 # (B, L, d/2)
    table = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if d % 2:
        table = F.pad(table, (0, 1))
    return table * real[..., None]


class MulTAttention(nn.Module):
    """Attention with one input projection to q, k, v (as MulT's), dropout on the weights.
    forward(x (B, Lq, d), context (B, Lk, d) or None for self-attention) -> (B, Lq, d)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.in_proj = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        B, L, d = x.shape
        split = lambda t: t.view(B, -1, self.heads, d // self.heads).transpose(1, 2)   # noqa: E731
        if context is None:
            q, k, v = self.in_proj(x).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        else:                                      # q from x, k and v from the context (same weights)
            w, b = self.in_proj.weight, self.in_proj.bias
            q = split(F.linear(x, w[:d], b[:d]))
            k, v = (split(t) for t in F.linear(context, w[d:], b[d:]).chunk(2, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(B, L, d))


class MulTLayer(nn.Module):
    """Pre-norm layer: x + drop(attn(LN x, LN context)); x + drop(fc2(drop(relu(fc1(LN x)))))."""

    def __init__(self, d: int, heads: int, attn_dropout: float, relu_dropout: float = 0.0,
                 res_dropout: float = 0.0, ff_mult: int = 4):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = MulTAttention(d, heads, attn_dropout)
        self.fc1, self.fc2 = nn.Linear(d, ff_mult * d), nn.Linear(ff_mult * d, d)
        self.res_dropout, self.relu_dropout = res_dropout, relu_dropout

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        ctx = None if context is None else self.norm1(context)
        x = x + F.dropout(self.attn(self.norm1(x), ctx, causal), self.res_dropout, self.training)
        h = F.dropout(F.relu(self.fc1(self.norm2(x))), self.relu_dropout, self.training)
        return x + F.dropout(self.fc2(h), self.res_dropout, self.training)


class MulTTransformer(nn.Module):
    """MulT's TransformerEncoder: (B, Lq, d) [reading (B, Lk, d)] -> (B, Lq, d). Inputs are scaled by
    sqrt(d) and given padding-aware positions, then ``layers`` layers and a final LayerNorm."""

    def __init__(self, d: int, heads: int, layers: int, attn_dropout: float, relu_dropout: float = 0.0,
                 res_dropout: float = 0.0, embed_dropout: float = 0.0, causal: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(MulTLayer(d, heads, attn_dropout, relu_dropout, res_dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.embed_dropout, self.causal = embed_dropout, causal

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = math.sqrt(x.shape[-1]) * x + padded_sinusoids(x)
        return F.dropout(h, self.embed_dropout, self.training)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h, ctx = self.embed(x), None if context is None else self.embed(context)
        for layer in self.layers:
            h = layer(h, ctx, self.causal)
        return self.norm(h)
