"""Transaction and spend forecasts: the transaction unit, reference baselines (BG/NBD and Pareto/NBD with
Gamma-Gamma, rate x horizon, RFM cells, zero) and the metrics that compare any forecast with the realised
horizon."""

from engine.forecast.baselines import (
    all_baselines,
    bgnbd_gamma_gamma,
    future_truth,
    naive,
    pareto_nbd,
    rfm_inputs,
    rfm_quantile,
    transaction_inputs,
    zero,
)
from engine.forecast.metrics import NAMES, compare, forecast_metrics, markdown
from engine.forecast.transactions import count_transactions, transaction_starts, transaction_unit

__all__ = [
    "NAMES",
    "all_baselines",
    "bgnbd_gamma_gamma",
    "compare",
    "count_transactions",
    "forecast_metrics",
    "future_truth",
    "markdown",
    "naive",
    "pareto_nbd",
    "rfm_inputs",
    "rfm_quantile",
    "transaction_inputs",
    "transaction_starts",
    "transaction_unit",
    "zero",
]
