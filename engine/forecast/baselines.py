"""Reference forecasts for the neural one: transactions and spend per customer in [as_of, as_of + H days).

Every baseline is fitted on the history only (events before ``as_of``) and counts transactions of a ``unit``
(see engine.forecast.transactions: "basket" or "day"). Each returns float64 arrays aligned with the history's
rows: {"expected_purchases": [n] expected transactions, "expected_spend": [n], "p_buy": [n]} where p_buy is
the probability of at least one transaction in the horizon; spend is the purchase amounts with unknown amounts
counted as 0 (see engine.forecast.inputs.future_truth, the matching targets). The lifetimes models add
"params": {name: float}, which the metrics ignore.

- bgnbd_gamma_gamma: BG/NBD for the transactions, Gamma-Gamma for their value (needs the ``eval`` extra:
  lifetimes, pandas); pareto_nbd: Pareto/NBD with the same Gamma-Gamma value (see engine.forecast.btyd);
- naive ("rate x horizon"): each customer keeps the transaction and spend rate of their tenure;
- rfm_quantile ("RFM cells"): the mean future of similar customers (recency/frequency/monetary quantile
  cells), learned by replaying the last days of the history;
- zero: nobody buys.
"""

from __future__ import annotations

import logging

import numpy as np

from engine.data.store import SequenceStore
from engine.forecast import btyd
from engine.forecast.inputs import DAY, future_truth, rfm_features, rfm_inputs, transaction_inputs

log = logging.getLogger(__name__)

__all__ = [  # rfm_inputs, rfm_features, transaction_inputs, future_truth: from engine.forecast.inputs
    "all_baselines",
    "bgnbd_gamma_gamma",
    "future_truth",
    "naive",
    "pareto_nbd",
    "rfm_features",
    "rfm_inputs",
    "rfm_quantile",
    "transaction_inputs",
    "zero",
]

KEYS = ("expected_purchases", "expected_spend", "p_buy")


def naive(history: SequenceStore, as_of: int, horizon_days: float, unit: str) -> dict[str, np.ndarray]:
    """Rate x horizon: transactions (and spend) per day over max(tenure, 1 day) times the horizon, where
    tenure runs from the first event to as_of; p_buy = 1 - exp(-expected transactions) (Poisson)."""
    f = transaction_inputs(history, as_of, unit)
    tenure = np.maximum(f["first_event_days"], 1.0)
    expected = f["transactions"] / tenure * horizon_days
    return {
        "expected_purchases": expected,
        "expected_spend": f["spend"] / tenure * horizon_days,
        "p_buy": 1.0 - np.exp(-expected),
    }


def zero(history: SequenceStore, as_of: int, horizon_days: float, unit: str) -> dict[str, np.ndarray]:
    """Nobody buys: zeros for every key (the floor any forecast must clear)."""
    return {key: np.zeros(history.n_customers) for key in KEYS}


def cell_features(f: dict[str, np.ndarray]) -> np.ndarray:
    """float64 [n, 3] from transaction_inputs: days since the last transaction (since the first event without
    one), transactions per day of tenure (first event to as_of, at least 1 day), mean spend per transaction
    (0 without one). A rate, not a count: the replayed history is shorter than the one predicted from."""
    n = f["transactions"]
    return np.stack(
        [
            f["T"] - f["recency"],
            n / np.maximum(f["first_event_days"], 1.0),
            np.divide(f["spend"], n, out=np.zeros(len(n)), where=n > 0),
        ],
        1,
    )


def quantile_bins(values: np.ndarray, reference: np.ndarray, q: int) -> np.ndarray:
    """int64 [n, d]: the bin (0..q-1) of each column of values among the q quantiles of the same column of
    reference [m, d]. Tied quantiles merge (a column with few distinct values gets fewer bins)."""
    cuts = np.linspace(0.0, 1.0, q + 1)[1:-1]
    return np.stack(
        [
            np.searchsorted(np.unique(np.quantile(reference[:, j], cuts)), values[:, j], side="right")
            for j in range(values.shape[1])
        ],
        1,
    ).astype(np.int64)


def cell_means(
    cal_bins: np.ndarray, cal_targets: np.ndarray, bins: np.ndarray, q: int, min_cell: int
) -> np.ndarray:
    """float64 [n, k]: the mean calibration target [m, k] of each customer's finest cell with at least
    min_cell calibration customers, among R x F x M, R x F, R and everyone (bins: int64 [., 3] in 0..q-1)."""
    out = np.full((len(bins), cal_targets.shape[1]), np.nan)
    for depth in (3, 2, 1, 0):  # a loop over cell levels, not customers
        weights = q ** np.arange(depth, dtype=np.int64)
        cal_key, key = cal_bins[:, :depth] @ weights, bins[:, :depth] @ weights
        counts = np.bincount(cal_key, minlength=q**depth)
        sums = np.stack([np.bincount(cal_key, weights=t, minlength=q**depth) for t in cal_targets.T], 1)
        fill = np.isnan(out[:, 0]) & ((counts[key] >= min_cell) | (depth == 0))
        out[fill] = sums[key[fill]] / counts[key[fill], None]
    return out


def rfm_quantile(
    history: SequenceStore, as_of: int, horizon_days: float, unit: str, q: int = 5, min_cell: int = 20
) -> dict[str, np.ndarray] | None:
    """RFM cells, calibrated on the history itself by replaying its last w = min(H, half the history span:
    the store's first event to as_of) days: cell_features as of as_of - w, targets from
    the events in [as_of - w, as_of) scaled to the horizon (transactions and spend x H / w, p_buy 1 - (1 - p)
    ** (H / w)); q quantile bins per feature learned on the calibration features; each customer gets the
    calibration mean of their cell (see cell_means). None when nobody has events before as_of - w."""
    span_days = (as_of - history.time_range()[0]) / DAY if history.n_events else 0.0
    window = min(horizon_days, span_days / 2)
    cut = as_of - int(round(window * DAY))
    past = history.before(cut)
    seen = past.lengths() > 0
    if not seen.any():
        log.warning(
            "RFM-cells baseline skipped: no customer has events before the calibration cut (cutoff - %g days); "
            "the history is empty or shorter than a second",
            window,
        )
        return None
    calibration = cell_features(transaction_inputs(past, cut, unit))[seen]
    target = future_truth(history.after(cut), unit)
    cal_targets = np.stack([target["purchases"], target["spend"], target["purchases"] > 0], 1)[seen]
    features = cell_features(transaction_inputs(history, as_of, unit))
    pred = cell_means(
        quantile_bins(calibration, calibration, q),
        cal_targets,
        quantile_bins(features, calibration, q),
        q,
        min_cell,
    )
    scale = horizon_days / window
    log.info(
        "RFM-cells baseline calibrated on %d customers over the last %g days (targets x %.3g)",
        seen.sum(),
        window,
        scale,
    )
    return {
        "expected_purchases": pred[:, 0] * scale,
        "expected_spend": pred[:, 1] * scale,
        "p_buy": 1.0 - (1.0 - pred[:, 2]) ** scale,
    }


def _lifetimes_inputs(history: SequenceStore, as_of: int, unit: str, model: str):
    """(transaction_inputs, rows with events, x, t_x, T on those rows), or None (logged) without lifetimes."""
    try:
        import lifetimes  # noqa: F401
    except ImportError as err:
        log.warning(
            "%s baseline skipped: %s (install the eval extra: pip install 'segment-engine[eval]')", model, err
        )
        return None
    f = transaction_inputs(history, as_of, unit)
    fit = f["T"] > 0  # rows with events (all of them, for a proper history)
    return f, fit, f["frequency"][fit], f["recency"][fit], f["T"][fit]


def _value(f: dict[str, np.ndarray], penalizers) -> tuple[np.ndarray, dict[str, float]]:
    """(float64 [n] expected spend per transaction, Gamma-Gamma params prefixed "gamma_gamma_" for the
    penalizer); the observed mean per transaction (the population's for non-buyers) if Gamma-Gamma fails."""
    repeat = (f["frequency"] > 0) & (f["monetary"] > 0)
    try:
        gg, params = btyd.fit_gamma_gamma(f["frequency"][repeat], f["monetary"][repeat], penalizers)
    except Exception as err:  # FitError, or lifetimes' input checks (no repeat buyer)
        log.warning(
            "Gamma-Gamma fit failed on %d repeat buyers (%s); using observed mean values",
            repeat.sum(),
            str(err).strip(),
        )
        n = f["transactions"]
        observed = np.divide(f["spend"], n, out=np.zeros(len(n)), where=n > 0)
        return np.where(n > 0, observed, f["spend"].sum() / max(n.sum(), 1.0)), {}
    params["gamma_gamma_penalizer"] = params.pop("penalizer")
    return btyd.value_per_transaction(gg, f["frequency"], f["monetary"]), params


def _btyd_baseline(history, as_of, horizon_days, unit, model, fit, forecast, penalizers):
    """Shared body of bgnbd_gamma_gamma and pareto_nbd: fit(x, t_x, T, penalizers) -> (fitter, params),
    forecast(fitter, x, t_x, T, H) -> (expected transactions, p_buy); spend from Gamma-Gamma (_value)."""
    inputs = _lifetimes_inputs(history, as_of, unit, model)
    if inputs is None:
        return None
    f, rows, x, t_x, T = inputs
    try:
        fitter, params = fit(x, t_x, T, penalizers)
        expected, p_buy = forecast(fitter, x, t_x, T, horizon_days)
        if not (np.isfinite(expected).all() and np.isfinite(p_buy).all()):
            raise btyd.FitError(f"non-finite forecasts remain (params {params})")
    except Exception as err:  # FitError, lifetimes' ConvergenceError, numerical errors
        log.warning("%s baseline skipped on %d customers: %s", model, rows.sum(), str(err).strip())
        return None
    value, value_params = _value(f, penalizers)
    out = {key: np.zeros(history.n_customers) for key in KEYS}
    out["expected_purchases"][rows] = expected
    out["expected_spend"][rows] = expected * value[rows]
    out["p_buy"][rows] = np.clip(p_buy, 0.0, 1.0)
    out["params"] = {**params, **value_params}
    return out


def bgnbd_gamma_gamma(
    history: SequenceStore, as_of: int, horizon_days: float, unit: str, penalizers=btyd.PENALIZERS
) -> dict | None:
    """BG/NBD (lifetimes.BetaGeoFitter) on transaction_inputs (x, t_x, T) predicts the transactions of the
    horizon and p_buy (btyd.bgnbd_forecast); expected spend = transactions x the Gamma-Gamma value per
    transaction. Both fits climb the penalizer ladder (see engine.forecast.btyd); "params": r, alpha, a, b,
    penalizer, and p, q, v, gamma_gamma_penalizer when Gamma-Gamma fitted. None (logged) when lifetimes is
    not installed or no penalizer gives a usable BG/NBD fit."""
    return _btyd_baseline(
        history,
        as_of,
        horizon_days,
        unit,
        "BG/NBD + Gamma-Gamma",
        btyd.fit_bgnbd,
        btyd.bgnbd_forecast,
        penalizers,
    )


def pareto_nbd(
    history: SequenceStore, as_of: int, horizon_days: float, unit: str, penalizers=btyd.PENALIZERS
) -> dict | None:
    """Pareto/NBD (lifetimes.ParetoNBDFitter's likelihood) on the same (x, t_x, T) as bgnbd_gamma_gamma, with
    the same Gamma-Gamma value per transaction; "params": r, alpha, s, beta, penalizer (+ Gamma-Gamma's).
    Bases over btyd.FIT_CUSTOMERS customers are fitted on a seeded sample of that size and predicted for all.
    None (logged) when lifetimes is not installed or no penalizer gives a usable fit."""
    return _btyd_baseline(
        history,
        as_of,
        horizon_days,
        unit,
        "Pareto/NBD + Gamma-Gamma",
        btyd.fit_pareto_nbd,
        btyd.pareto_nbd_forecast,
        penalizers,
    )


def all_baselines(
    history: SequenceStore, as_of: int, horizon_days: float, unit: str
) -> dict[str, dict[str, np.ndarray]]:
    """{"bgnbd_gamma_gamma", "pareto_nbd", "naive", "rfm_quantile", "zero"} -> predictions in transactions of
    ``unit``, leaving out the baselines that could not run (their reason is logged)."""
    results = {
        name: baseline(history, as_of, horizon_days, unit)
        for name, baseline in (
            ("bgnbd_gamma_gamma", bgnbd_gamma_gamma),
            ("pareto_nbd", pareto_nbd),
            ("naive", naive),
            ("rfm_quantile", rfm_quantile),
            ("zero", zero),
        )
    }
    return {name: pred for name, pred in results.items() if pred is not None}
