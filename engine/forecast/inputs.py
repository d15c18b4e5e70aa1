"""Per-customer facts a forecast starts from, and the realised targets it is scored on.

rfm_inputs counts purchase days (the lifetimes convention, for segment profiles and RFM views);
transaction_inputs counts transactions of a unit (see engine.forecast.transactions) in continuous days, for the
baselines; future_truth gives the matching targets of a horizon.
"""

from __future__ import annotations

import numpy as np

from engine.data.store import SequenceStore
from engine.forecast.transactions import count_transactions, transaction_starts

DAY = 86400.0
DAY_S = 86400  # integer seconds, for UTC calendar days


def _events(history: SequenceStore, as_of: int):
    """What rfm_inputs and transaction_inputs read of every event: ts int64, customer rows, the purchase
    mask, amounts (unknown 0), and per customer whether it has events and its first and last event times
    (as_of without events)."""
    ts = np.asarray(history.columns["ts"], dtype=np.int64)
    amount = np.nan_to_num(np.asarray(history.columns["amount"], dtype=np.float64), nan=0.0)
    has_events = history.lengths() > 0
    ts_pad = np.append(ts, as_of)  # safe indices for rows without events (masked below)
    first_event = np.where(has_events, ts_pad[history.offsets[:-1]], as_of)
    last_event = np.where(has_events, ts_pad[history.offsets[1:] - 1], as_of)
    return ts, history.customer_rows(), history.is_purchase(), amount, has_events, first_event, last_event


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
    ts, rows, purchase, amount, has_events, first_event, last_event = _events(history, as_of)

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


def transaction_inputs(history: SequenceStore, as_of: int, unit: str) -> dict[str, np.ndarray]:
    """Per-customer transaction facts as of ``as_of`` (epoch s), float64 [n_customers] each, continuous times in
    days (the inputs of BG/NBD, Pareto/NBD and Gamma-Gamma): frequency = transactions - 1; recency = days from
    the first to the last transaction; T = days from the first transaction to as_of; monetary = the spend of
    the transactions after the first / frequency (0 without a repeat). Customers without purchases: frequency
    0, recency 0, T from their first event. Also transactions, spend (purchase amounts, unknown 0),
    first_event_days and last_event_days (event to as_of). Rows without events get zeros."""
    n = history.n_customers
    ts, rows, purchase, amount, has_events, first_event, last_event = _events(history, as_of)
    starts = transaction_starts(history, unit)

    t_rows, t_ts = rows[starts], np.append(ts[starts], as_of)
    transactions = np.bincount(t_rows, minlength=n).astype(np.float64)
    first = np.searchsorted(t_rows, np.arange(n), side="left")  # index of each row's first transaction
    last = np.maximum(np.searchsorted(t_rows, np.arange(n), side="right") - 1, 0)
    bought = transactions > 0
    first_ts = np.where(bought, t_ts[first], first_event)
    last_ts = np.where(bought, t_ts[last], first_event)
    # purchase events of each row's first transaction: their transaction index (in store order) is `first`
    transaction = (np.cumsum(starts) - 1)[purchase]
    p_rows, p_amount = rows[purchase], amount[purchase]
    spend = np.bincount(p_rows, weights=p_amount, minlength=n)
    in_first = transaction == first[p_rows]
    first_spend = np.bincount(p_rows[in_first], weights=p_amount[in_first], minlength=n)
    frequency = np.maximum(transactions - 1.0, 0.0)
    return {
        "frequency": frequency,
        "recency": (last_ts - first_ts) / DAY,
        "T": np.where(has_events, (as_of - first_ts) / DAY, 0.0),
        "monetary": np.divide(spend - first_spend, frequency, out=np.zeros(n), where=frequency > 0),
        "transactions": transactions,
        "spend": spend,
        "first_event_days": (as_of - first_event) / DAY,
        "last_event_days": (as_of - last_event) / DAY,
    }


def rfm_features(f: dict[str, np.ndarray]) -> np.ndarray:
    """float64 [n, 3] from rfm_inputs: days since the last purchase (since the first event without one),
    purchase events, mean value per purchase (0 without one)."""
    n = f["n_purchases"]
    return np.stack(
        [f["T"] - f["recency"], n, np.divide(f["spend"], n, out=np.zeros(len(n)), where=n > 0)], 1
    )


def future_truth(future: SequenceStore, unit: str | None = None) -> dict[str, np.ndarray]:
    """Realised targets from a store of the horizon's events aligned with the history: {"purchases": float64
    [n] transactions of ``unit`` (purchase events when None), "spend": float64 [n] purchase amounts, unknown
    as 0}."""
    purchase = future.is_purchase()
    rows = future.customer_rows()[purchase]
    amount = np.nan_to_num(np.asarray(future.columns["amount"], dtype=np.float64)[purchase], nan=0.0)
    n = future.n_customers
    purchases = (
        np.bincount(rows, minlength=n).astype(np.float64)
        if unit is None
        else count_transactions(future, unit)
    )
    return {"purchases": purchases, "spend": np.bincount(rows, weights=amount, minlength=n)}
