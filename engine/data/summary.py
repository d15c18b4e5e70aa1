"""Per-customer RFM-style facts from a store, vectorized: the inputs of segment profiles and baselines."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from engine.data.store import SequenceStore

DAY = 86400.0


def purchase_counts(store: SequenceStore, field: str = "item_id", weights: np.ndarray | None = None) -> sp.csr_matrix:
    """float32 CSR [n_customers, vocabulary of field]: each customer's purchases of each known item (or
    category), or the sum of ``weights`` (float [n_events], one per event) over them."""
    codes = np.asarray(store.columns[field]).astype(np.int64)
    keep = store.is_purchase() & (codes > 0)
    w = np.ones(int(keep.sum()), np.float32) if weights is None else np.asarray(weights, np.float32)[keep]
    m = sp.csr_matrix((w, (store.customer_rows()[keep], codes[keep])),
                      shape=(store.n_customers, len(store.vocabs[field])))
    m.sum_duplicates()
    return m


def _mode(store: SequenceStore, field: str) -> pa.Array:
    """Each customer's most frequent known token of a categorical field (null when none is known)."""
    codes = np.asarray(store.columns[field]).astype(np.int64)
    rows = store.customer_rows()
    known = codes > 0
    width = len(store.vocabs[field])
    keys, counts = np.unique(rows[known] * width + codes[known], return_counts=True)
    key_rows, key_codes = keys // width, keys % width
    order = np.lexsort((-counts, key_rows))  # per customer, the highest count first (ties: lowest id)
    key_rows, key_codes = key_rows[order], key_codes[order]
    first = np.ones(len(key_rows), dtype=bool)
    first[1:] = key_rows[1:] != key_rows[:-1]
    best = np.zeros(store.n_customers, dtype=np.int64)
    best[key_rows[first]] = key_codes[first]
    vocab = np.asarray(store.vocabs[field], dtype=object)
    return pa.array(np.where(best > 0, vocab[best], None), pa.string())


def customer_summary(store: SequenceStore, as_of: int | None = None) -> pa.Table:
    """One row per customer of the store, in store order: customer_id, n_events, frequency (purchases),
    spend (purchase amounts, unknown as 0), spend_known (share of purchases with an amount), recency_days
    (as of ``as_of``, default the data's end), tenure_days, top_category, top_item, top_channel."""
    as_of = store.time_range()[1] if as_of is None else as_of
    ts = np.asarray(store.columns["ts"])
    offsets = store.offsets
    lengths = store.lengths()
    purchase = store.is_purchase()
    amount = np.asarray(store.columns["amount"], dtype=np.float64)
    csum = lambda x: np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])  # noqa: E731
    per_customer = lambda c: c[offsets[1:]] - c[offsets[:-1]]  # noqa: E731
    frequency = per_customer(csum(purchase)).astype(np.int64)
    spend = per_customer(csum(np.where(purchase, np.nan_to_num(amount, nan=0.0), 0.0)))
    known = per_customer(csum(purchase & ~np.isnan(amount)))
    has = lengths > 0
    last = np.where(has, ts[np.maximum(offsets[1:] - 1, 0)], as_of)
    first = np.where(has, ts[np.minimum(offsets[:-1], max(len(ts) - 1, 0))], as_of)
    return pa.table({
        "customer_id": store.customer_ids,
        "n_events": lengths.astype(np.int64),
        "frequency": frequency,
        "spend": spend,
        "spend_known": np.divide(known, frequency, out=np.zeros(len(frequency)), where=frequency > 0),
        "recency_days": (as_of - last) / DAY,
        "tenure_days": (as_of - first) / DAY,
        "top_category": _mode(store, "category"),
        "top_item": _mode(store, "item_id"),
        "top_channel": _mode(store, "channel"),
    })
