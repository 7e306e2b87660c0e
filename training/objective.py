"""What training minimises and how fast: the point loss and the learning-rate schedule."""
from __future__ import annotations

import math

import torch


def loss_fn(name: str, pred: torch.Tensor, target: torch.Tensor, size: int) -> torch.Tensor:
    """Point loss in crop pixels: ``mse``, ``l1`` or ``wing`` (Feng et al. 2018, w=4, eps=1)."""
    a = ((pred - target) * size).abs()
    if name == "mse":
        per = a.pow(2)
    elif name == "l1":
        per = a
    else:
        w, eps = 4.0, 1.0
        per = torch.where(a < w, w * torch.log(1 + a / eps), a - (w - w * math.log(1 + w / eps)))
    # the mean, reduced in the order that trained the shipped weights (.mean() differs in the last bits)
    return per.sum(2).sum() / (2 * per.shape[0] * per.shape[1])


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak``, then cosine decay to zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
