"""Checks that keep a run from going silently wrong: an event log whose columns are not mapped the way they look,
a mapping that leaves every event a non-purchase. Each finding is a warning in the log naming the column or
key to set; with data.strict=true it stops the run instead (StrictDataError)."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.data.events import CANONICAL, REQUIRED, Columns

log = logging.getLogger(__name__)

# Column names that usually hold a canonical field, lower case.
LOOKALIKES = {
    "customer_id": ("user_id", "userid", "customer", "client_id", "household_id", "member_id", "visitor_id"),
    "ts": ("timestamp", "time", "event_time", "datetime", "date", "created_at", "order_date"),
    "event_type": ("event", "action", "type", "event_name", "interaction"),
    "item_id": ("sku", "product_id", "product", "item", "article_id", "asin", "productid"),
    "category": ("product_category", "category_id", "department", "category_code", "cat"),
    "amount": ("price", "revenue", "sales_value", "value", "total", "spend", "sales", "order_value"),
    "quantity": ("qty", "units", "count", "quantity_ordered"),
    "channel": ("source", "platform", "device", "store_type", "medium"),
}


class StrictDataError(ValueError):
    """A data warning turned into an error by data.strict=true."""


def column_names(file: str) -> list[str]:
    """The columns of one Parquet or CSV file (its schema or header only)."""
    if file.endswith(".csv"):
        return pacsv.open_csv(file).schema.names
    return pq.read_schema(file).names


def column_findings(file: str, columns: Columns) -> tuple[list[str], list[str]]:
    """(warnings, ignored columns) for one file: a canonical field mapped to a column the file lacks while
    another column looks like it, and the columns nothing reads."""
    found = column_names(file)
    lower = {name.lower(): name for name in found}
    mapped = {getattr(columns, f) for f in CANONICAL}
    warnings = []
    for field in CANONICAL:
        name = getattr(columns, field)
        if name in found or field in REQUIRED:  # a missing required column is an error of its own
            continue
        candidates = [lower[c] for c in LOOKALIKES.get(field, ()) if c in lower and lower[c] not in mapped]
        if candidates:
            warnings.append(f"{file}: no column '{name}' for {field}, but '{candidates[0]}' looks like one; "
                            f"set data.columns.{field}={candidates[0]} to read it ({field} is unknown otherwise)")
    ignored = [c for c in found if c not in mapped]
    return warnings, ignored


def warn(messages: list[str], strict: bool) -> None:
    """Log each message as a warning, or raise them all at once when strict."""
    if strict and messages:
        raise StrictDataError("data.strict=true: " + " | ".join(messages))
    for message in messages:
        log.warning("%s", message)


def check_columns(files: list[str], columns: Columns, strict: bool = False) -> None:
    """Warn (or, strict, fail) about look-alike columns left unmapped; say which columns are ignored."""
    if not files:
        return
    warnings, ignored = column_findings(files[0], columns)
    if ignored:
        log.info("%s: columns not read (not mapped to a field): %s", files[0], ignored)
    warn(warnings, strict)


def check_purchases(store, purchase_types: list[str], strict: bool = False) -> None:
    """Warn (or fail) when no event is a purchase: every spend, frequency and forecast would be zero."""
    if store.n_events and not np.any(store.is_purchase()):
        types = [t for t in store.vocabs["event_type"][1:]][:10]
        warn([f"no purchase events: data.purchase_types={list(purchase_types)} matches none of the log's event "
              f"types {types}; set data.purchase_types (and data.return_types) to yours, or every spend, "
              "frequency and forecast is zero"], strict)
