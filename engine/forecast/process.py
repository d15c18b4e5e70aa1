"""The purchase process the forecasting head predicts, and its answers for any horizon in closed form.

Per customer the head predicts three parameters as of the forecast time: p_alive, the probability that the
customer goes on buying; ``rate``, transactions per day while alive; ``spend_rate``, money per day while
alive. The head is fitted on windows of every length the log holds, up to ``span`` days (see
engine.model.head), so p_alive already carries the drop-out within such windows. Past the span, where the
log shows nothing, an alive customer drops out at ``decay`` per day, the decline of the base's p_alive
over the log's latest weeks (engine.pipeline.calibrate_forecast). Over the next h days:

    D(h)                   = min(h, span) + (1 - exp(-decay (h - span)+)) / decay   expected days alive
    expected transactions  = p_alive x rate x D(h)
    expected spend         = p_alive x spend_rate x D(h)
    P(any transaction)     = p_alive x (1 - exp(-rate x D(h)))
    lifetime value         = p_alive x spend_rate x [(1 - e^(-delta span)) / delta + e^(-delta span) / (decay + delta)]

with delta the continuous discount per day. The horizon is a question asked of the fitted parameters, not
a training constant: any h, also longer than the history, without running the model again. A drop-out
learned jointly with the head is not identified by a short log (only customers new at its start are seen
over long windows; fitted so, it halved the 19-week forecasts of a grocery log), hence this split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLUMNS = ("p_alive", "rate", "spend_rate")  # the per-customer parameters, in forecast.parquet


def alive_days(horizon_days: float | np.ndarray, decay: float, span: float) -> np.ndarray:
    """float64: expected days alive within the horizon (see the module's D(h))."""
    h = np.asarray(horizon_days, dtype=np.float64)
    beyond = np.maximum(h - span, 0.0)
    return np.minimum(h, span) + (beyond if decay <= 0 else -np.expm1(-decay * beyond) / decay)


def daily_discount(annual_rate: float) -> float:
    """The continuous discount rate per day of an annual rate (0.1: money a year out is worth 1/1.1)."""
    if annual_rate < 0:
        raise ValueError(f"forecast.discount_rate={annual_rate}: expected >= 0 (an annual rate, 0.1 for 10%)")
    return float(np.log1p(annual_rate) / 365.0)


@dataclass
class Process:
    """Fitted purchase-process parameters of n customers: float64 [n] arrays, the model's decay (per day)
    and span (days)."""

    p_alive: np.ndarray
    rate: np.ndarray
    spend_rate: np.ndarray
    decay: float
    span: float

    @classmethod
    def from_columns(cls, columns: dict, decay: float, span: float) -> Process:
        return cls(*(np.asarray(columns[c], dtype=np.float64) for c in COLUMNS), decay=float(decay),
                   span=float(span))

    def answer(self, horizon_days: float) -> dict[str, np.ndarray]:
        """{"expected_purchases" (transactions), "expected_spend", "p_buy", "p_churn" (no transaction in the
        horizon)} float64 [n] for a horizon of ``horizon_days`` days."""
        if not np.isfinite(horizon_days) or horizon_days <= 0:
            raise ValueError(f"horizon_days={horizon_days}: expected a number of days > 0")
        d = alive_days(horizon_days, self.decay, self.span)
        p_buy = self.p_alive * -np.expm1(-self.rate * d)
        return {
            "expected_purchases": self.p_alive * self.rate * d,
            "expected_spend": self.p_alive * self.spend_rate * d,
            "p_buy": p_buy,
            "p_churn": 1.0 - p_buy,
        }

    def lifetime_value(self, annual_discount: float) -> np.ndarray:
        """float64 [n]: the discounted expected spend over the customer's whole remaining life."""
        delta = daily_discount(annual_discount)
        if delta + self.decay <= 0:
            raise ValueError("a lifetime value needs a drop-out (decay) or a discount rate > 0")
        seen = self.span if delta == 0 else -np.expm1(-delta * self.span) / delta
        return self.p_alive * self.spend_rate * (seen + np.exp(-delta * self.span) / (self.decay + delta))

    def table(self, horizon_days: float, annual_discount: float) -> dict[str, np.ndarray]:
        """The columns of forecast.parquet after customer_id: the horizon's answers, p_alive,
        lifetime_value, and the parameters that answer other horizons."""
        out = self.answer(horizon_days)
        out["p_alive"] = self.p_alive
        out["lifetime_value"] = self.lifetime_value(annual_discount)
        out["rate"], out["spend_rate"] = self.rate, self.spend_rate
        return out


def forecast_answer(params: dict, meta: dict, horizon_days: float | None = None) -> dict:
    """One customer's forecast as plain floats, for the service: ``params`` holds the COLUMNS (a row of
    forecast.parquet, or the head's output for new events), ``meta`` the bundle manifest's "forecast" entry
    (decay_per_day, span_days, horizon_days, discount_rate, unit); the horizon asked defaults to the
    bundle's."""
    horizon = float(meta["horizon_days"] if horizon_days is None else horizon_days)
    one = Process(*(np.array([float(params[c])]) for c in COLUMNS), decay=float(meta["decay_per_day"]),
                  span=float(meta["span_days"]))
    out = {name: float(v[0]) for name, v in one.table(horizon, float(meta["discount_rate"])).items()}
    out.update(horizon_days=horizon, unit=meta["unit"])
    return out
