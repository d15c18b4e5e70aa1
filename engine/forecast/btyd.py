"""Buy-'til-you-die models from lifetimes, fitted properly: BG/NBD and Pareto/NBD for the transactions of a
horizon, Gamma-Gamma for their value. Plain functions over float64 [n] arrays in the lifetimes convention:
x = repeat transactions, t_x = days from the first to the last transaction, T = days from the first
transaction to as_of (x = t_x = 0 and T from the first event for customers who never bought).

Every fit climbs a ladder of penalizers, from none up, and keeps the first fit that converged (scipy reported
success) with finite, positive parameters and a finite objective; the chosen penalizer and the parameters are
logged at INFO and returned as {name: float, "penalizer": float}. Needs the ``eval`` extra (lifetimes, pandas).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

PENALIZERS = (0.0, 0.001, 0.01, 0.1)
FIT_CUSTOMERS = 5000  # Pareto/NBD is fitted on a seeded sample of at most this many customers


class FitError(RuntimeError):
    """No penalizer of the ladder gave a converged fit with usable parameters."""


@contextlib.contextmanager
def _quiet():
    """lifetimes prints the optimiser's state when a fit fails: send it to the debug log instead."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        try:
            yield
        finally:
            if printed.getvalue().strip():
                log.debug("lifetimes: %s", printed.getvalue())


def _ladder(
    model: str, fit: Callable, penalizers, usable: Callable[[dict], str] = lambda params: ""
) -> tuple[object, dict[str, float]]:
    """fit(penalizer) -> (fitter, objective), tried up the ladder until a fit converges with finite, positive
    parameters, a finite objective and nothing said by usable(params); -> (fitter, params + "penalizer")."""
    failures = []
    for penalizer in penalizers:
        try:
            with _quiet(), np.errstate(all="ignore"):  # the optimiser tries overflowing params
                fitter, objective = fit(penalizer)
            params = {k: float(v) for k, v in fitter.params_.items()}
            values = np.array([*params.values(), objective], dtype=np.float64)
            problem = (
                usable(params) if np.isfinite(values).all() and min(params.values()) > 0 else "not finite"
            )
            if problem:
                raise FitError(f"params {params}, objective {objective}: {problem}")
        except Exception as err:  # lifetimes raises ConvergenceError, LinAlgError (Hessian), numerical errors
            failures.append(f"penalizer {penalizer:g}: {str(err).strip()}")
            log.info("%s: no usable fit with penalizer %g (%s)", model, penalizer, str(err).strip())
            continue
        log.info(
            "%s fitted with penalizer %g: %s, objective %.6g",
            model,
            penalizer,
            {k: round(v, 4) for k, v in params.items()},
            objective,
        )
        return fitter, {**params, "penalizer": float(penalizer)}
    raise FitError(
        f"{model} did not converge with any penalizer of {tuple(penalizers)}: " + "; ".join(failures)
    )


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, penalizers=PENALIZERS):
    """-> (fitted lifetimes.BetaGeoFitter, {"r", "alpha", "a", "b", "penalizer"}); FitError if none fits."""
    from lifetimes import BetaGeoFitter

    def fit(penalizer: float):
        bg = BetaGeoFitter(penalizer_coef=penalizer).fit(x, t_x, T)  # raises ConvergenceError
        return bg, float(bg._negative_log_likelihood_)

    return _ladder("BG/NBD", fit, penalizers)


def fit_pareto_nbd(
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    penalizers=PENALIZERS,
    max_customers: int = FIT_CUSTOMERS,
    seed: int = 0,
):
    """-> (lifetimes.ParetoNBDFitter with params_, {"r", "alpha", "s", "beta", "penalizer"}); FitError if none
    fits. lifetimes' own fit starts Nelder-Mead from an unseeded random point and drops scipy's verdict, so its
    likelihood is minimised here (the same Nelder-Mead, in lifetimes' time scale: max T = 1) from a fixed start,
    and success checked. Each likelihood costs hypergeometric functions per customer (about 1 s per fit on 2,500
    customers), so bases over max_customers are fitted on a seeded sample of that size (the parameters are the
    population's) and predicted for everyone."""
    import pandas as pd
    from lifetimes import ParetoNBDFitter
    from scipy.optimize import minimize

    fit_rows = np.arange(len(x))
    if len(x) > max_customers:
        fit_rows = np.sort(np.random.default_rng(seed).choice(len(x), max_customers, replace=False))
        log.info("Pareto/NBD fitted on a sample of %d of %d customers", max_customers, len(x))
    scale = 1.0 / T[fit_rows].max()
    args = (x[fit_rows].astype(np.int64), t_x[fit_rows] * scale, T[fit_rows] * scale, np.ones(len(fit_rows)))

    def fit(penalizer: float):
        out = minimize(
            ParetoNBDFitter._negative_log_likelihood,
            np.ones(4),
            args=(*args, penalizer),
            method="Nelder-Mead",
            tol=1e-4,  # lifetimes' default; the likelihood can be flat along s, beta -> inf (no drop-out)
            options={"maxiter": 4000},
        )
        if not out.success:
            raise FitError(f"Nelder-Mead did not converge: {out.message}")
        pnbd = ParetoNBDFitter(penalizer_coef=penalizer)
        r, alpha, s, beta = out.x
        pnbd.params_ = pd.Series([r, alpha / scale, s, beta / scale], index=["r", "alpha", "s", "beta"])
        return pnbd, float(out.fun)

    return _ladder("Pareto/NBD", fit, penalizers)


def _alive_rate_limit(expected, alive, r, alpha, x, T, horizon_days) -> np.ndarray:
    """Replace lifetimes' non-finite expectations (0/0 when the drop-out parameter is near its limit: a -> 0
    for BG/NBD, s -> 1 for Pareto/NBD, seen at x = 0 on a grocery log) by P(alive) x the alive customer's
    posterior Gamma-Poisson rate x the horizon, the same expectation to first order in the drop-out rate."""
    broken = ~np.isfinite(expected)
    if broken.any():
        expected = np.where(broken, alive * (r + x) / (alpha + T) * horizon_days, expected)
        log.info(
            "%d of %d expectations from the alive-rate limit (lifetimes returned NaN)",
            broken.sum(),
            len(expected),
        )
    return expected


def bgnbd_forecast(bg, x, t_x, T, horizon_days: float) -> tuple[np.ndarray, np.ndarray]:
    """(expected transactions, p_buy) in the horizon, float64 [n], from a fitted BetaGeoFitter. p_buy =
    P(alive) x (1 - P(none in H | alive)); alive, a customer can only drop out after a transaction, so
    P(none in H | alive) = ((alpha + T) / (alpha + T + H)) ** (r + x), exact under BG/NBD."""
    with np.errstate(all="ignore"):
        expected = np.asarray(
            bg.conditional_expected_number_of_purchases_up_to_time(horizon_days, x, t_x, T), np.float64
        )
        alive = np.asarray(bg.conditional_probability_alive(x, t_x, T), np.float64)
    r, alpha = float(bg.params_["r"]), float(bg.params_["alpha"])
    if not np.isfinite(alive).all():
        raise FitError(f"BG/NBD: non-finite P(alive) (params {dict(bg.params_)})")
    expected = _alive_rate_limit(expected, alive, r, alpha, x, T, horizon_days)
    return expected, alive * (1.0 - ((alpha + T) / (alpha + T + horizon_days)) ** (r + x))


def pareto_nbd_forecast(pnbd, x, t_x, T, horizon_days: float) -> tuple[np.ndarray, np.ndarray]:
    """(expected transactions, p_buy) in the horizon, float64 [n], from a fitted ParetoNBDFitter; p_buy = 1 -
    lifetimes' conditional P(no transaction in H), or P(alive) x (1 - ((alpha + T) / (alpha + T + H)) ** (r + x))
    (no drop-out within H: an upper bound) where that is not finite."""
    r, alpha = float(pnbd.params_["r"]), float(pnbd.params_["alpha"])
    with np.errstate(all="ignore"):
        expected = np.asarray(
            pnbd.conditional_expected_number_of_purchases_up_to_time(horizon_days, x, t_x, T), np.float64
        )
        alive = np.asarray(pnbd.conditional_probability_alive(x, t_x, T), np.float64)
        none = np.asarray(
            pnbd.conditional_probability_of_n_purchases_up_to_time(0, horizon_days, x, t_x, T), np.float64
        )
    if not np.isfinite(alive).all():
        raise FitError(f"Pareto/NBD: non-finite P(alive) (params {dict(pnbd.params_)})")
    bound = alive * (1.0 - ((alpha + T) / (alpha + T + horizon_days)) ** (r + x))
    p_buy = np.where(np.isfinite(none), 1.0 - np.clip(none, 0.0, 1.0), bound)
    return _alive_rate_limit(expected, alive, r, alpha, x, T, horizon_days), p_buy


def fit_gamma_gamma(frequency: np.ndarray, monetary: np.ndarray, penalizers=PENALIZERS):
    """Gamma-Gamma on repeat buyers (frequency > 0, monetary > 0: mean spend per repeat transaction) ->
    (lifetimes.GammaGammaFitter, {"p", "q", "v", "penalizer"}); FitError if none fits with q > 1 (a finite
    population mean)."""
    from lifetimes import GammaGammaFitter

    def fit(penalizer: float):
        gg = GammaGammaFitter(penalizer_coef=penalizer).fit(frequency, monetary)
        return gg, float(gg._negative_log_likelihood_)

    def usable(params: dict) -> str:
        return "" if params["q"] > 1.0 else "q <= 1, the population mean value is infinite"

    return _ladder("Gamma-Gamma", fit, penalizers, usable)


def value_per_transaction(gg, frequency: np.ndarray, monetary: np.ndarray) -> np.ndarray:
    """float64 [n]: Gamma-Gamma's expected spend per transaction for repeat buyers with monetary > 0, its
    population mean p v / (q - 1) for everyone else."""
    p, q, v = (float(gg.params_[k]) for k in ("p", "q", "v"))
    repeat = (frequency > 0) & (monetary > 0)
    value = np.asarray(gg.conditional_expected_average_profit(frequency, monetary), np.float64)
    return np.where(repeat, value, p * v / (q - 1.0))
