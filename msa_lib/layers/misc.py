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


def dropout_bits(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)``, drawn from random bits when ``p == 0.5``.

    Each element is kept with probability 1/2 and doubled, as torch's dropout does, but one
    random byte decides eight elements (``torch.randint``) where torch draws one random number
    per element. On a CPU that makes dropout on a MOSI-sized attention map (112 x 8 x 501 x 501
    weights) about four times faster (``python -m msa_lib bench --official`` records the step
    time). Any other ``p`` goes to ``F.dropout`` unchanged. The masks differ from torch's for
    the same seed (another random stream); their distribution is the same.
    """
    if not training or p == 0.0:
        return x
    if p != 0.5:
        return nn.functional.dropout(x, p, True)
    n, shifts = x.numel(), torch.arange(8, dtype=torch.uint8, device=x.device)
    byte = torch.randint(0, 256, ((n + 7) // 8, 1), dtype=torch.uint8, device=x.device)
    keep = ((byte >> shifts) & 1).view(-1)[:n].view(x.shape)                         # 0 or 1, uint8
    return x * keep.to(x.dtype).mul_(2.0)                                           # kept elements / (1 - p)
