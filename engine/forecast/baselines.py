"""Reference forecasts for the neural one: purchases and spend per customer in [as_of, as_of + H days).

Every baseline is fitted on the history only (events before ``as_of``) and returns float64 arrays aligned
with the history's rows: {"expected_purchases": [n], "expected_spend": [n], "p_buy": [n]} where p_buy is the
probability of at least one purchase in the horizon. Purchases are purchase events; spend is their amounts
with unknown amounts counted as 0 (see future_truth, the matching targets).

- naive: each customer keeps the purchase and spend rate of their tenure;
- rfm_quantile: the mean future of similar customers (recency/frequency/monetary quantile cells), learned by
  replaying the last H days of the history;
- bgnbd_gamma_gamma: BG/NBD for repeat purchase days and Gamma-Gamma for their value (needs the ``eval``
  extra: lifetimes, pandas).
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np

from engine.data.store import SequenceStore

log = logging.getLogger(__name__)

DAY = 86400.0
DAY_S = 86400  # integer seconds, for UTC calendar days


def rfm_inputs(history: SequenceStore, as_of: int) -> dict[str, np.ndarray]:
    """Per-customer RFM facts as of ``as_of`` (epoch s), float64 [n_customers] each, times in days.

    In the lifetimes convention, purchases are counted in UTC calendar days: frequency is the number of
    distinct purchase days - 1 (repeat purchase days); recency the whole days from the first to the last
    purchase day; T the days from the start of the first purchase day to as_of; monetary the mean spend per
    repeat purchase day (0 without one). Customers without purchases: frequency 0, recency 0, T from the
    start of the day of their first event. Also n_purchases
    (purchase events), spend (their amounts, unknown 0), first_event_days and last_event_days (event to
    as_of). Rows without events get zeros. Relies on the store's order: by customer, then time."""
    n = history.n_customers
    ts = np.asarray(history.columns["ts"], dtype=np.int64)
    rows = history.customer_rows()
    purchase = history.is_purchase()
    amount = np.nan_to_num(np.asarray(history.columns["amount"], dtype=np.float64), nan=0.0)
    has_events = history.lengths() > 0
    ts_pad = np.append(ts, as_of)  # safe indices for rows without events (masked below)
    first_event = np.where(has_events, ts_pad[history.offsets[:-1]], as_of)
    last_event = np.where(has_events, ts_pad[history.offsets[1:] - 1], as_of)

    p_rows, p_ts, p_amount = rows[purchase], ts[purchase], amount[purchase]
    p_day = p_ts // DAY_S
    new_day = np.ones(len(p_rows), dtype=bool)
    new_day[1:] = (p_rows[1:] != p_rows[:-1]) | (p_day[1:] != p_day[:-1])
    n_purchases = np.bincount(p_rows, minlength=n).astype(np.float64)
    spend = np.bincount(p_rows, weights=p_amount, minlength=n)
    n_days = np.bincount(p_rows[new_day], minlength=n).astype(np.float64)
    bought = n_purchases > 0
    starts = np.searchsorted(p_rows, np.arange(n), side="left")
    ends = np.searchsorted(p_rows, np.arange(n), side="right")
    p_ts_pad = np.append(p_ts, as_of)
    first_day = np.where(bought, p_ts_pad[starts], first_event) // DAY_S
    last_day = np.where(bought, p_ts_pad[np.maximum(ends - 1, 0)], first_event) // DAY_S
    in_first_day = p_day == first_day[p_rows]
    first_day_spend = np.bincount(p_rows[in_first_day], weights=p_amount[in_first_day], minlength=n)

    frequency = np.maximum(n_days - 1.0, 0.0)
    repeat_spend = spend - first_day_spend
    return {
        "frequency": frequency,
        "recency": (last_day - first_day).astype(np.float64),
        "T": np.where(has_events, (as_of - first_day * DAY_S) / DAY, 0.0),
        "monetary": np.divide(repeat_spend, frequency, out=np.zeros(n), where=frequency > 0),
        "n_purchases": n_purchases,
        "spend": spend,
        "first_event_days": (as_of - first_event) / DAY,
        "last_event_days": (as_of - last_event) / DAY,
    }


def naive(history: SequenceStore, as_of: int, horizon_days: float) -> dict[str, np.ndarray]:
    """Same rate as before: purchases (and spend) per day over max(tenure, 1 day) times the horizon, where
    tenure runs from the first event to as_of; p_buy = 1 - exp(-expected purchases) (Poisson)."""
    f = rfm_inputs(history, as_of)
    tenure = np.maximum(f["first_event_days"], 1.0)
    expected = f["n_purchases"] / tenure * horizon_days
    return {
        "expected_purchases": expected,
        "expected_spend": f["spend"] / tenure * horizon_days,
        "p_buy": 1.0 - np.exp(-expected),
    }


def rfm_features(f: dict[str, np.ndarray]) -> np.ndarray:
    """float64 [n, 3] from rfm_inputs: days since the last purchase (since the first event without one),
    purchase events, mean value per purchase (0 without one)."""
    n = f["n_purchases"]
    return np.stack(
        [f["T"] - f["recency"], n, np.divide(f["spend"], n, out=np.zeros(len(n)), where=n > 0)], 1
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
    history: SequenceStore, as_of: int, horizon_days: float, q: int = 5, min_cell: int = 20
) -> dict[str, np.ndarray] | None:
    """RFM-quantile model calibrated on the history itself: features as of as_of - H, targets from the events
    in [as_of - H, as_of); q quantile bins per feature learned on the calibration features; each customer
    gets the calibration mean of their cell (see cell_means). None when nobody has events before as_of - H."""
    cut = as_of - int(round(horizon_days * DAY))
    past = history.before(cut)
    seen = past.lengths() > 0
    if not seen.any():
        log.warning(
            "RFM-quantile baseline skipped: no customer has events before the calibration cut "
            "(cutoff - %g days); move the cutoff later or shorten forecast.horizon_days",
            horizon_days,
        )
        return None
    calibration = rfm_features(rfm_inputs(past, cut))[seen]
    target = future_truth(history.after(cut))
    cal_targets = np.stack([target["purchases"], target["spend"], target["purchases"] > 0], 1)[seen]
    features = rfm_features(rfm_inputs(history, as_of))
    pred = cell_means(
        quantile_bins(calibration, calibration, q),
        cal_targets,
        quantile_bins(features, calibration, q),
        q,
        min_cell,
    )
    log.info(
        "RFM-quantile baseline calibrated on %d customers (cut %d, %g days)", seen.sum(), cut, horizon_days
    )
    return {"expected_purchases": pred[:, 0], "expected_spend": pred[:, 1], "p_buy": pred[:, 2]}


@contextlib.contextmanager
def _quiet():
    """lifetimes prints the optimiser's state when a fit fails: send it to the debug log instead."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        try:
            yield
        finally:
            if printed.getvalue().strip():
                log.debug("lifetimes: %s", printed.getvalue())


def _value_per_day(f: dict[str, np.ndarray], penalizer: float) -> np.ndarray:
    """float64 [n]: expected spend per purchase day, Gamma-Gamma on repeat buyers with monetary > 0 (the
    population mean for the others); the observed means if the fit fails or has no finite mean (q <= 1)."""
    from lifetimes import GammaGammaFitter

    repeat = (f["frequency"] > 0) & (f["monetary"] > 0)
    try:
        with _quiet():
            gg = GammaGammaFitter(penalizer_coef=penalizer).fit(f["frequency"][repeat], f["monetary"][repeat])
        p, q, v = (float(gg.params_[k]) for k in ("p", "q", "v"))
        if q <= 1.0:
            raise ValueError(f"q={q:.3g} <= 1, the population mean value is infinite")
        value = np.asarray(gg.conditional_expected_average_profit(f["frequency"], f["monetary"]), np.float64)
        return np.where(repeat, value, p * v / (q - 1.0))
    except Exception as err:  # lifetimes raises ConvergenceError, ValueError, numerical errors
        log.warning(
            "Gamma-Gamma fit failed on %d repeat buyers (%s); using observed mean values",
            repeat.sum(),
            str(err).strip(),
        )
        days = f["frequency"] + (f["n_purchases"] > 0)
        observed = np.divide(f["spend"], days, out=np.zeros(len(days)), where=days > 0)
        return np.where(days > 0, observed, f["spend"].sum() / max(days.sum(), 1.0))


def _bgnbd(
    bg, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, horizon_days: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a lifetimes BetaGeoFitter on float64 [n] x, t_x, T -> (expected purchase days, p_buy), float64 [n].
    p_buy = P(alive) x (1 - P(no purchase in H | alive)); alive, a customer can only drop out after a
    purchase, so P(no purchase | alive) = ((alpha + T) / (alpha + T + H)) ** (r + x), exact under BG/NBD."""
    with _quiet():
        bg.fit(x, t_x, T)
    days = np.asarray(
        bg.conditional_expected_number_of_purchases_up_to_time(horizon_days, x, t_x, T), np.float64
    )
    alive = np.asarray(bg.conditional_probability_alive(x, t_x, T), np.float64)
    r, alpha = float(bg.params_["r"]), float(bg.params_["alpha"])
    if not np.isfinite(alive).all():
        raise ValueError(f"non-finite P(alive) (params {dict(bg.params_)})")
    broken = ~np.isfinite(days)
    if broken.any():
        # lifetimes' closed form is 0/0 for some customers when the drop-out parameter a is tiny (seen at
        # frequency 0 on a grocery log); there the alive customer's posterior Gamma-Poisson rate times the
        # horizon, weighted by P(alive), is the same expectation to first order in a.
        days[broken] = alive[broken] * (r + x[broken]) / (alpha + T[broken]) * horizon_days
        log.info("BG/NBD: %d of %d expectations from the alive-rate limit (lifetimes returned NaN)",
                 broken.sum(), len(days))
    log.info("BG/NBD params %s", {k: round(float(v), 4) for k, v in bg.params_.items()})
    return days, alive * (1.0 - ((alpha + T) / (alpha + T + horizon_days)) ** (r + x))


def bgnbd_gamma_gamma(
    history: SequenceStore, as_of: int, horizon_days: float, penalizer: float = 0.001
) -> dict[str, np.ndarray] | None:
    """BG/NBD (lifetimes.BetaGeoFitter) on (frequency, recency, T) predicts purchase days in the horizon;
    expected purchases = days x the customer's purchases per purchase day (the population's for
    non-buyers); expected spend = days x the Gamma-Gamma value per day; p_buy from BG/NBD (see _bgnbd).
    None (logged) when lifetimes is not installed or the fit fails."""
    try:
        from lifetimes import BetaGeoFitter
    except ImportError as err:
        log.warning(
            "BG/NBD + Gamma-Gamma baseline skipped: %s (install the eval extra: "
            "pip install 'segment-engine[eval]')",
            err,
        )
        return None
    f = rfm_inputs(history, as_of)
    fit = f["T"] > 0  # rows with events (all of them, for a proper history)
    x, t_x, T = f["frequency"][fit], f["recency"][fit], f["T"][fit]
    try:
        days, p_buy = _bgnbd(BetaGeoFitter(penalizer_coef=penalizer), x, t_x, T, horizon_days)
    except Exception as err:  # lifetimes raises ConvergenceError, ValueError, numerical errors
        log.warning(
            "BG/NBD + Gamma-Gamma baseline skipped: BG/NBD fit failed on %d customers: %s",
            fit.sum(),
            str(err).strip(),
        )
        return None
    buy_days = f["frequency"] + (f["n_purchases"] > 0)
    population_per_day = f["n_purchases"].sum() / max(buy_days.sum(), 1.0)
    per_day = np.where(buy_days > 0, f["n_purchases"] / np.maximum(buy_days, 1.0), population_per_day)
    out = {k: np.zeros(history.n_customers) for k in ("expected_purchases", "expected_spend", "p_buy")}
    out["expected_purchases"][fit] = days * per_day[fit]
    out["expected_spend"][fit] = days * _value_per_day(f, penalizer)[fit]
    out["p_buy"][fit] = p_buy
    return out


def all_baselines(
    history: SequenceStore, as_of: int, horizon_days: float
) -> dict[str, dict[str, np.ndarray]]:
    """{"naive", "rfm_quantile", "bgnbd_gamma_gamma"} -> predictions, leaving out the baselines that could not
    run (their reason is logged)."""
    results = {
        "naive": naive(history, as_of, horizon_days),
        "rfm_quantile": rfm_quantile(history, as_of, horizon_days),
        "bgnbd_gamma_gamma": bgnbd_gamma_gamma(history, as_of, horizon_days),
    }
    return {name: pred for name, pred in results.items() if pred is not None}


def future_truth(future: SequenceStore) -> dict[str, np.ndarray]:
    """Realised targets from a store of the horizon's events aligned with the history: {"purchases": float64
    [n] purchase events, "spend": float64 [n] their amounts, unknown as 0}."""
    purchase = future.is_purchase()
    rows = future.customer_rows()[purchase]
    amount = np.nan_to_num(np.asarray(future.columns["amount"], dtype=np.float64)[purchase], nan=0.0)
    n = future.n_customers
    return {
        "purchases": np.bincount(rows, minlength=n).astype(np.float64),
        "spend": np.bincount(rows, weights=amount, minlength=n),
    }
