"""Per-segment profiles: size, RFM summaries, top categories/items, channel mix, mean forecasts."""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

NUMERIC_COLUMNS = ("recency_days", "frequency", "spend", "n_events")
STRING_COLUMNS = ("top_category", "top_item", "top_channel")
UNKNOWN_CHANNEL = "unknown"


def _numeric(customers: pa.Table, name: str) -> np.ndarray:
    """float64 [n] with nulls as NaN."""
    column = customers.column(name)
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _group_mean(labels: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Mean of non-NaN values per segment, float64 [k] (NaN for segments with none)."""
    known = ~np.isnan(values)
    total = np.bincount(labels[known], weights=values[known], minlength=k)
    count = np.bincount(labels[known], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _group_median(labels: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Exact median of non-NaN values per segment, float64 [k] (NaN for segments with none)."""
    known = ~np.isnan(values)
    labels, values = labels[known], values[known]
    order = np.lexsort((values, labels))
    values = values[order]
    count = np.bincount(labels, minlength=k)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    lo = np.minimum(start + (count - 1) // 2, max(len(values) - 1, 0))
    hi = np.minimum(start + count // 2, max(len(values) - 1, 0))
    if len(values) == 0:
        return np.full(k, np.nan)
    return np.where(count > 0, (values[lo] + values[hi]) / 2, np.nan)


def _top_values(labels: np.ndarray, column: pa.ChunkedArray, k: int, top_n: int) -> pa.ListArray:
    """Per segment, the top_n non-null values by number of customers (ties: value ascending).

    Returns list<string> [k]."""
    counts = (
        pa.table({"segment": labels, "value": pc.cast(column, pa.string())})
        .filter(pc.is_valid(pc.field("value")))
        .group_by(["segment", "value"])
        .aggregate([([], "count_all")])
        .sort_by([("segment", "ascending"), ("count_all", "descending"), ("value", "ascending")])
    )
    segment = counts.column("segment").to_numpy()
    per_segment = np.bincount(segment, minlength=k)
    start = np.concatenate([[0], np.cumsum(per_segment)[:-1]])
    rank = np.arange(len(segment)) - start[segment]
    keep = rank < top_n
    kept = counts.column("value").combine_chunks().filter(pa.array(keep))
    offsets = np.concatenate([[0], np.cumsum(np.minimum(per_segment, top_n))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), kept.cast(pa.string()))


def _channel_mix(labels: np.ndarray, column: pa.ChunkedArray, k: int) -> list[str]:
    """JSON object per segment: share of its customers by top_channel (null -> "unknown"),
    largest share first, shares summing to 1."""
    channel = pc.fill_null(pc.cast(column, pa.string()), UNKNOWN_CHANNEL).combine_chunks()
    encoded = pc.dictionary_encode(channel)
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    n_names = len(names)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    table = np.bincount(labels * n_names + codes, minlength=k * n_names).reshape(k, n_names)
    sizes = table.sum(axis=1)
    mixes = []
    for segment in range(k):  # a loop over segments, not customers
        row = table[segment]
        order = np.lexsort((names.astype(str), -row))
        mix = {str(names[j]): round(float(row[j] / sizes[segment]), 6) for j in order if row[j] > 0}
        mixes.append(json.dumps(mix))
    return mixes


def read_channel_mix(value: str | dict | None) -> dict[str, float]:
    """A channel_mix cell (JSON string, or the dict the service hands out) as {channel: share}."""
    if not value:
        return {}
    return dict(value) if isinstance(value, dict) else json.loads(value)


def segment_profiles(labels: np.ndarray, k: int, customers: pa.Table, top_n: int = 5) -> pa.Table:
    """One row per segment describing who is in it.

    labels: int64 [n] segment per customer; customers: pyarrow table [n] aligned with labels, with
    recency_days float64, frequency int64, spend float64 (null/NaN counts as 0), n_events int64,
    top_category / top_item / top_channel (string or null), and any extra numeric columns (forecasts,
    spend_known, ...), each averaged per segment as mean_<name> (nulls ignored).
    Returns columns: segment, size, share, median_recency_days, mean_recency_days, mean_frequency,
    mean_spend, total_spend, mean_n_events, spend_lift and frequency_lift (the segment's mean over the base's),
    top_categories list<string>, top_items list<string>, channel_mix (JSON string {channel: share}),
    mean_<extra>... Empty segments get size 0 and NaN means.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if customers.num_rows != n:
        raise ValueError(f"segment_profiles: {n} labels but {customers.num_rows} customer rows")
    missing = [c for c in NUMERIC_COLUMNS + STRING_COLUMNS if c not in customers.column_names]
    if missing:
        raise ValueError(f"segment_profiles: customers table lacks column(s) {missing}")
    if n and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(
            f"segment_profiles: labels must lie in 0..{k - 1}, got {labels.min()}..{labels.max()}"
        )

    sizes = np.bincount(labels, minlength=k)
    recency = _numeric(customers, "recency_days")
    spend = np.nan_to_num(_numeric(customers, "spend"), nan=0.0)
    total_spend = np.bincount(labels, weights=spend, minlength=k).astype(np.float64)
    frequency = _numeric(customers, "frequency")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_spend = np.where(sizes > 0, total_spend / np.maximum(sizes, 1), np.nan)
        mean_frequency = _group_mean(labels, frequency, k)
        base_spend, base_frequency = spend.mean() if n else np.nan, np.nanmean(frequency) if n else np.nan
        columns: dict[str, pa.Array | np.ndarray | list] = {
            "segment": np.arange(k, dtype=np.int64),
            "size": sizes.astype(np.int64),
            "share": sizes / max(n, 1),
            "median_recency_days": _group_median(labels, recency, k),
            "mean_recency_days": _group_mean(labels, recency, k),
            "mean_frequency": mean_frequency,
            "mean_spend": mean_spend,
            "total_spend": total_spend,
            "mean_n_events": _group_mean(labels, _numeric(customers, "n_events"), k),
            "spend_lift": np.where(base_spend > 0, mean_spend / base_spend, np.nan),
            "frequency_lift": np.where(base_frequency > 0, mean_frequency / base_frequency, np.nan),
            "top_categories": _top_values(labels, customers.column("top_category"), k, top_n),
            "top_items": _top_values(labels, customers.column("top_item"), k, top_n),
            "channel_mix": _channel_mix(labels, customers.column("top_channel"), k),
        }
    for field in customers.schema:
        name, column_type = field.name, field.type
        numeric = (
            pa.types.is_integer(column_type)
            or pa.types.is_floating(column_type)
            or pa.types.is_boolean(column_type)
        )
        if name in NUMERIC_COLUMNS or name == "segment" or not numeric:
            continue
        columns[f"mean_{name}"] = _group_mean(labels, _numeric(customers, name), k)
    log.info("profiles: %d segments over %d customers", k, n)
    return pa.table(columns)
