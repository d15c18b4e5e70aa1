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
