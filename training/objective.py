"""What training minimises and how fast: the point loss and the learning-rate schedule."""
from __future__ import annotations

import math

import torch
from torch import nn


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


def grid_loss(maps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A grid stage's loss (see ``annotator.network.GridNet``) for crop-relative ``target`` (N, 68, 2).

    Cross-entropy of the cell scores against the cell holding each point, plus the Laplace negative
    log-likelihood (per coordinate, in cell units) of the offsets and scales of that cell and of its eight
    neighbours (a point near a cell's edge may win in the next cell): the scale learns how sure the point is.
    """
    n, k, _, h, w = maps.shape
    grid = target * target.new_tensor([w, h])
    cell = grid.floor().clamp_min(0).minimum(grid.new_tensor([w - 1, h - 1])).long()
    scores = maps[:, :, 0].flatten(2)
    classify = nn.functional.cross_entropy(scores.reshape(n * k, -1), (cell[..., 1] * w + cell[..., 0]).view(-1))
    flat = maps[:, :, 1:].flatten(3)
    nll, count = 0.0, 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            at = cell + cell.new_tensor([dx, dy])
            valid = ((at >= 0) & (at < at.new_tensor([w, h]))).all(2)
            at = at.clamp_min(0).minimum(at.new_tensor([w - 1, h - 1]))
            out = flat.gather(3, (at[..., 1] * w + at[..., 0])[:, :, None, None].expand(n, k, 3, 1))[..., 0]
            log_b = out[..., 2:].clamp(-6, 3)
            per = ((out[..., :2] - (grid - at - 0.5)).abs() * torch.exp(-log_b) + log_b).sum(2)
            nll = nll + (per * valid).sum()
            count += valid.sum()
    return classify + nll / count
