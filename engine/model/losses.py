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



def tweedie_deviance(log_mu: torch.Tensor, y: torch.Tensor, p: float = TWEEDIE_POWER) -> torch.Tensor:
    """Tweedie negative log-likelihood (up to terms free of mu), log link, 1 < p < 2: zeros and a heavy tail."""
    return -y * torch.exp(log_mu * (1 - p)) / (1 - p) + torch.exp(log_mu * (2 - p)) / (2 - p)


def forecast_loss(predicted: dict[str, torch.Tensor], count: torch.Tensor, spend: torch.Tensor,
                  horizon: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean over pairs [B] of the zero-inflated Poisson negative log-likelihood of the transactions
    in each window of ``horizon`` days (p_alive, rate x days) plus the Tweedie loss of its spend (mean
    p_alive x spend rate x days)."""
    days = horizon
    expected = predicted["log_rate"].exp() * days
    log_alive, log_dead = F.logsigmoid(predicted["alive_logit"]), F.logsigmoid(-predicted["alive_logit"])
    log_zero = torch.logaddexp(log_dead, log_alive - expected)
    log_some = log_alive + count * torch.log(expected.clamp(min=1e-12)) - expected - torch.lgamma(count + 1)
    counts = -torch.where(count > 0, log_some, log_zero)
    money = tweedie_deviance(log_alive + predicted["log_spend_rate"] + torch.log(days.clamp(min=1e-12)), spend)
    return ((counts + money) * weight).sum() / weight.sum().clamp(min=1.0)


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
