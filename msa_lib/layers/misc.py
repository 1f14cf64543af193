"""Small blocks: learned bottleneck tokens, gradient reversal, variational IB encoder."""
from __future__ import annotations

import torch
from torch import nn


class BottleneckTokens(nn.Module):
    """``n`` learned tokens of width ``dim``, expanded to a batch: forward(B) -> (B, n, dim)."""

    def __init__(self, n: int, dim: int, init_std: float = 0.02):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(n, dim) * init_std)

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.tokens.unsqueeze(0).expand(batch_size, -1, -1)


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-scale`` backward (Ganin & Lempitsky, 2015)."""
    return _Reverse.apply(x, scale)


class GradientReversal(nn.Module):
    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return grad_reverse(x, self.scale)


class VariationalEncoder(nn.Module):
    """Variational information-bottleneck encoder (Alemi et al., 2017).

    forward(x (..., in_dim)) -> (z, mu, logvar), each (..., z_dim); z is sampled with the
    reparameterisation trick in training and equals mu in eval mode.
    ``kl(mu, logvar)`` is KL(q(z|x) || N(0, I)) summed over z and averaged over the rest.
    """

    def __init__(self, in_dim: int, z_dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(in_dim, z_dim)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU())
        self.mu = nn.Linear(hidden, z_dim)
        self.logvar = nn.Linear(hidden, z_dim)

    def forward(self, x):
        h = self.net(x)
        mu, logvar = self.mu(h), self.logvar(h).clamp(-10.0, 10.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return z, mu, logvar

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(-1).mean()
