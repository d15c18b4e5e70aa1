"""Transactions: the unit forecasts count. A shop's log holds one event per line item; a customer's visit or
order (a basket) holds many, and the number of lines says little about how often a customer comes back.

A transaction is a customer's purchase events at one timestamp (``basket``: the lines of an order share its
time, as in a till log) or on one UTC calendar day (``day``, the lifetimes convention, for logs whose lines
have times of their own). ``transaction_unit`` picks the unit from the log itself, once, at training; the
model keeps it, so that later histories (one customer's at ``POST /score``) are counted the same way.
"""

from __future__ import annotations

import numpy as np

from engine.data.store import SequenceStore

DAY_S = 86400
UNITS = ("basket", "day")
BASKET_SHARE = 0.3  # purchase lines sharing their time with the customer's previous line: the log has baskets


def transaction_unit(store: SequenceStore) -> str:
    """ "basket" when at least BASKET_SHARE of the purchase lines share their timestamp with the same
    customer's previous purchase line (lines of one order), else "day"."""
    purchase = store.is_purchase()
    rows, ts = store.customer_rows()[purchase], np.asarray(store.columns["ts"])[purchase]
    if len(ts) < 2:
        return "day"
    shared = (rows[1:] == rows[:-1]) & (ts[1:] == ts[:-1])
    return "basket" if shared.mean() >= BASKET_SHARE else "day"


def transaction_starts(store: SequenceStore, unit: str) -> np.ndarray:
    """bool [n_events]: the purchase events that open a transaction (the first line of each basket or
    purchase day of a customer); every other event is False. Relies on the store's order."""
    if unit not in UNITS:
        raise ValueError(f"transaction unit {unit!r}: expected one of {UNITS}")
    purchase = store.is_purchase()
    at = np.flatnonzero(purchase)
    rows = store.customer_rows()[at]
    ts = np.asarray(store.columns["ts"], dtype=np.int64)[at]
    key = ts if unit == "basket" else ts // DAY_S
    new = np.ones(len(at), dtype=bool)
    new[1:] = (rows[1:] != rows[:-1]) | (key[1:] != key[:-1])
    starts = np.zeros(len(purchase), dtype=bool)
    starts[at[new]] = True
    return starts


def count_transactions(store: SequenceStore, unit: str) -> np.ndarray:
    """float64 [n_customers]: transactions per customer."""
    rows = store.customer_rows()[transaction_starts(store, unit)]
    return np.bincount(rows, minlength=store.n_customers).astype(np.float64)
