"""Purchase and spend forecasts: reference baselines (naive, RFM quantiles, BG/NBD + Gamma-Gamma) and the
metrics that compare any forecast with the realised horizon."""

from engine.forecast.baselines import (
    all_baselines,
    bgnbd_gamma_gamma,
    future_truth,
    naive,
    rfm_inputs,
    rfm_quantile,
)
from engine.forecast.metrics import NAMES, compare, forecast_metrics, markdown

__all__ = [
    "NAMES",
    "all_baselines",
    "bgnbd_gamma_gamma",
    "compare",
    "forecast_metrics",
    "future_truth",
    "markdown",
    "naive",
    "rfm_inputs",
    "rfm_quantile",
]
