"""Attention blocks shared by the methods, all on ``scaled_dot_product_attention``.

Masks follow one convention: a boolean ``key_mask`` of shape (B, Lk) that is True at
positions a query may attend to (real, observed elements). A query whose keys are all
masked (e.g. a modality removed entirely) gets a zero attention output instead of NaN.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) fixed sine/cosine position codes (Vaswani et al., 2017)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe


class MultiHeadAttention(nn.Module):
    """Multi-head attention of queries (B, Lq, D) over keys/values (B, Lk, D)."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0, head_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim or dim // heads
        inner = self.heads * self.head_dim
        self.q = nn.Linear(dim, inner)
        self.kv = nn.Linear(dim, 2 * inner)
        self.out = nn.Linear(inner, dim)
        self.dropout = dropout
        self.last_weights: torch.Tensor | None = None  # (B, heads, Lq, Lk) when keep_weights

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor | None = None,
                keep_weights: bool = False) -> torch.Tensor:
        B, Lq, _ = x.shape
        Lk = context.shape[1]
        q = self.q(x).view(B, Lq, self.heads, self.head_dim).transpose(1, 2)        # (B, h, Lq, hd)
        k, v = self.kv(context).view(B, Lk, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, h, Lk, hd)
        attn_mask = None
        if key_mask is not None:
            attn_mask = key_mask[:, None, None, :]                                 # (B, 1, 1, Lk)
            empty = ~key_mask.any(dim=1)                                           # queries with no key
            if empty.any():  # let them attend to everything, then zero their output below
                attn_mask = attn_mask | empty[:, None, None, None]
        if keep_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)            # (B, h, Lq, Lk)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = scores.softmax(-1)
            self.last_weights = weights.detach()
            y = F.dropout(weights, self.dropout, self.training) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                               dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, Lq, self.heads * self.head_dim)           # (B, Lq, inner)
        y = self.out(y)
        if key_mask is not None and empty.any():
            y = y * (~empty)[:, None, None].to(y.dtype)
        return y


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer; with ``context`` it is a cross-attention layer."""

    def __init__(self, dim: int, heads: int = 4, ff_mult: int = 2, dropout: float = 0.1):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, dropout)
        self.ff = FeedForward(dim, ff_mult * dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, key_mask=None, context=None, keep_weights=False):
        """x: (B, L, D); context: (B, Lk, D) or None (self-attention); key_mask: (B, Lk)."""
        h = self.norm_q(x)
        kv = h if context is None else self.norm_kv(context)
        x = x + self.drop(self.attn(h, kv, key_mask, keep_weights))
        return x + self.drop(self.ff(self.norm_ff(x)))


class TransformerEncoder(nn.Module):
    """A stack of self-attention layers with padding masks and optional positions.

    forward(x (B, L, D), mask (B, L) bool) -> (B, L, D).
    """

    def __init__(self, dim: int, depth: int = 2, heads: int = 4, ff_mult: int = 2,
                 dropout: float = 0.1, max_len: int | None = None):
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, ff_mult, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        if max_len is not None:
            self.register_buffer("pos", sinusoidal_positions(max_len, dim), persistent=False)
        else:
            self.pos = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, keep_weights: bool = False):
        if self.pos is not None:
            x = x + self.pos[: x.shape[1]]
        for layer in self.layers:
            x = layer(x, mask, keep_weights=keep_weights)
        return self.norm(x)


class CrossModalAttention(nn.Module):
    """Target sequence attends to a source sequence, ``depth`` layers (MulT's building block).

    forward(target (B, Lt, D), source (B, Ls, D), source_mask (B, Ls)) -> (B, Lt, D).
    """

    def __init__(self, dim: int, depth: int = 1, heads: int = 4, ff_mult: int = 2, dropout: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, ff_mult, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, target, source, source_mask=None, keep_weights=False):
        for layer in self.layers:
            target = layer(target, source_mask, context=source, keep_weights=keep_weights)
        return self.norm(target)

    def attention_maps(self) -> list[torch.Tensor]:
        """Weights (B, heads, Lt, Ls) of each layer from the last call with keep_weights=True."""
        return [layer.attn.last_weights for layer in self.layers]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, L, D) using a (B, L) bool mask; all-masked rows give zeros."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)
