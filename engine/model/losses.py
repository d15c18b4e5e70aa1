"""Objectives: CoLES contrastive loss and forecasting losses for counts and heavy-tailed money."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TWEEDIE_POWER = 1.5


def coles_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-positive InfoNCE. z: float [N, d] L2-normalised views; labels: int64 [N], same label = same
    customer. Each view's other views of the same customer are positives, everything else negatives."""
    sim = (z @ z.T) / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    positive = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    n_pos = positive.sum(1)
    has = n_pos > 0
    per_view = -(log_prob.masked_fill(~positive, 0.0)).sum(1)[has] / n_pos[has]
    return per_view.mean()


def poisson_nll(log_rate: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    return log_rate.exp() - count * log_rate


def tweedie_deviance(log_mu: torch.Tensor, y: torch.Tensor, p: float = TWEEDIE_POWER) -> torch.Tensor:
    """Tweedie negative log-likelihood (up to terms free of mu), log link, 1 < p < 2: zeros and a heavy tail."""
    return -y * torch.exp(log_mu * (1 - p)) / (1 - p) + torch.exp(log_mu * (2 - p)) / (2 - p)


def forecast_loss(predicted: dict[str, torch.Tensor], count: torch.Tensor, spend: torch.Tensor,
                  weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of Poisson (purchases), Tweedie (spend) and logistic (no purchase) losses, each [B]."""
    churn = (count == 0).float()
    total = (poisson_nll(predicted["log_count"], count)
             + tweedie_deviance(predicted["log_spend"], spend)
             + F.binary_cross_entropy_with_logits(predicted["churn_logit"], churn, reduction="none"))
    return (total * weight).sum() / weight.sum().clamp(min=1.0)


def item_loss(logits: torch.Tensor, views: dict, labels: torch.Tensor, n_customers: int) -> torch.Tensor:
    """Cross-entropy of each view's item logits [N, K] against the item mix of the customer's OTHER views.

    views["cat"][..., 1] holds item ids (0 unknown; ids >= K, the rarest, are left out)."""
    n, k = logits.shape
    items = views["cat"][..., 1]
    steps = torch.arange(items.shape[1], device=items.device)
    valid = (items > 0) & (items < k) & (steps[None, :] < views["lengths"].to(items.device)[:, None])
    counts = torch.zeros(n, k, device=logits.device, dtype=logits.dtype)
    counts.scatter_add_(1, torch.where(valid, items, 0), valid.to(logits.dtype))
    counts[:, 0] = 0
    per_customer = torch.zeros(n_customers, k, device=logits.device, dtype=logits.dtype).index_add_(0, labels, counts)
    target = per_customer[labels] - counts
    mass = target.sum(1)
    has = mass > 0
    if not has.any():
        return logits.sum() * 0.0
    target = target[has] / mass[has, None]
    return -(target * torch.log_softmax(logits[has].float(), dim=-1)).sum(1).mean()
