"""Forecast quality against the realised horizon, per method, and the markdown table of the comparison.

pred: {"expected_purchases", "expected_spend", "p_buy"} and truth: {"purchases", "spend"}, float64 [n]
arrays aligned by customer (see engine.forecast.baselines; purchases are transactions or purchase events, as
long as both sides count the same); other keys of pred (a baseline's "params") are ignored.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.stats import spearmanr

from engine.index.lookalike import roc_auc  # one ROC-AUC for lookalikes and forecasts

log = logging.getLogger(__name__)

NAMES = {
    "neural": "segment-engine (neural)",
    "bgnbd_gamma_gamma": "BG/NBD + Gamma-Gamma",
    "pareto_nbd": "Pareto/NBD + Gamma-Gamma",
    "naive": "rate x horizon",
    "rfm_quantile": "RFM cells",
    "zero": "zero",
}
COLUMNS = (
    ("mae", "MAE"),
    ("rmse", "RMSE"),
    ("total_error", "total error %"),
    ("spearman", "Spearman"),
    ("auc_buys_again", "AUC buys-again"),
    ("top10_revenue_capture", "top-10% revenue share"),
)
PERCENT = {"total_error", "spend_total_error", "top10_revenue_capture"}


def relative_error(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Signed (sum predicted - sum actual) / sum actual; NaN when the actual total is 0."""
    total = float(np.sum(actual))
    return (float(np.sum(predicted)) - total) / total if total != 0 else float("nan")


def revenue_capture(predicted_spend: np.ndarray, actual_spend: np.ndarray, top_share: float) -> float:
    """Share of the actual total spend held by the ceil(top_share x n) customers with the highest predicted
    spend (ties: the lower row first). NaN when the actual total is 0."""
    total = float(np.sum(actual_spend))
    if total == 0 or len(actual_spend) == 0:
        return float("nan")
    k = int(np.ceil(top_share * len(actual_spend)))
    top = np.argsort(-np.asarray(predicted_spend, dtype=np.float64), kind="stable")[:k]
    return float(np.sum(np.asarray(actual_spend)[top]) / total)


def forecast_metrics(pred: dict, truth: dict, top_share: float = 0.1) -> dict[str, float]:
    """mae, rmse (purchases per customer), total_error and spend_total_error (signed, relative to the actual
    totals), spearman (predicted vs actual purchases), auc_buys_again (p_buy vs any actual purchase),
    top10_revenue_capture (see revenue_capture, with top_share), spend_mae."""
    predicted = np.asarray(pred["expected_purchases"], dtype=np.float64)
    actual = np.asarray(truth["purchases"], dtype=np.float64)
    p_spend = np.asarray(pred["expected_spend"], dtype=np.float64)
    a_spend = np.asarray(truth["spend"], dtype=np.float64)
    if not (len(predicted) == len(actual) == len(p_spend) == len(a_spend) == len(pred["p_buy"])):
        raise ValueError(
            f"forecast and truth are not aligned: {len(predicted)} predictions, {len(actual)} "
            "customers in the horizon (expected one prediction per history row)"
        )
    constant = len(actual) < 2 or np.ptp(predicted) == 0 or np.ptp(actual) == 0  # Spearman undefined
    return {
        "mae": float(np.mean(np.abs(predicted - actual))),
        "rmse": float(np.sqrt(np.mean((predicted - actual) ** 2))),
        "total_error": relative_error(predicted, actual),
        "spend_total_error": relative_error(p_spend, a_spend),
        "spearman": float("nan") if constant else float(spearmanr(predicted, actual).statistic),
        "auc_buys_again": roc_auc(np.asarray(pred["p_buy"], dtype=np.float64), actual > 0),
        "top10_revenue_capture": revenue_capture(p_spend, a_spend, top_share),
        "spend_mae": float(np.mean(np.abs(p_spend - a_spend))),
    }


def compare(results: dict[str, dict], truth: dict, top_share: float = 0.1) -> dict[str, dict[str, float]]:
    """{method: forecast_metrics} for each method's predictions, in the given order."""
    table = {method: forecast_metrics(pred, truth, top_share) for method, pred in results.items()}
    log.info("forecast comparison over %d customers: %s", len(truth["purchases"]), table)
    return table


INTERVAL_FIGURES = ("mae", "rmse", "spearman", "top10_revenue_capture")


def paired_intervals(pred: dict, reference: dict, truth: dict, resamples: int = 200, level: float = 0.95,
                     seed: int = 0, top_share: float = 0.1) -> dict[str, list[float]]:
    """{figure: [low, high]}: the ``level`` interval of forecast_metrics(pred) - forecast_metrics(reference) over
    ``resamples`` draws of the customers with replacement, both methods scored on the same draw (a paired
    bootstrap), for the figures of INTERVAL_FIGURES. The spread over training seeds says how much a margin
    moves with the model's fit; this says how much it moves with the sample of customers: a margin whose
    interval holds 0 may be the sample's, whatever the seeds say."""
    n = len(truth["purchases"])
    if n < 2:
        return {k: [float("nan"), float("nan")] for k in INTERVAL_FIGURES}
    keys = ("expected_purchases", "expected_spend", "p_buy")
    arrays = [{k: np.asarray(p[k], dtype=np.float64) for k in keys} for p in (pred, reference)]
    actual = {k: np.asarray(truth[k], dtype=np.float64) for k in ("purchases", "spend")}
    rng = np.random.default_rng(seed)
    draws = np.empty((resamples, len(INTERVAL_FIGURES)))
    for i in range(resamples):
        rows = rng.integers(0, n, n)
        t = {k: v[rows] for k, v in actual.items()}
        mine, theirs = (forecast_metrics({k: v[rows] for k, v in a.items()}, t, top_share) for a in arrays)
        draws[i] = [mine[k] - theirs[k] for k in INTERVAL_FIGURES]
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    return {k: [float(lo), float(hi)] for k, lo, hi in zip(INTERVAL_FIGURES, low, high, strict=True)}


def interval_text(interval: dict[str, list[float]]) -> str:
    """'MAE [-0.160, -0.059], ...' for paired_intervals' answer (revenue share in points)."""
    label = dict(COLUMNS)
    scale = {"top10_revenue_capture": 100.0}
    return ", ".join(f"{label[k]} [{scale.get(k, 1.0) * lo:+.3f}, {scale.get(k, 1.0) * hi:+.3f}]"
                     for k, (lo, hi) in interval.items())


def _cell(key: str, value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    if key == "total_error":
        return f"{100 * value:+.1f}%"
    return f"{100 * value:.1f}%" if key in PERCENT else f"{value:.3f}"


def markdown(table: dict[str, dict[str, float]]) -> str:
    """A pipe table, one row per method (display names from NAMES, other keys as given)."""
    lines = ["| method | " + " | ".join(h for _, h in COLUMNS) + " |", "| --- " * (len(COLUMNS) + 1) + "|"]
    for method, row in table.items():
        cells = " | ".join(_cell(key, row[key]) for key, _ in COLUMNS)
        lines.append(f"| {NAMES.get(method, method)} | {cells} |")
    return "\n".join(lines)
