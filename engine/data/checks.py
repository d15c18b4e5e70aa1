"""Checks that keep a run from going silently wrong: an event log whose columns are not mapped the way they look,
a mapping that leaves every event a non-purchase. Each finding is a warning in the log naming the column or
key to set; with data.strict=true it stops the run instead (StrictDataError). A data-quality figure over its
threshold (data.max_*: a wrong column mapping or timestamp unit) always stops it (DataQualityError)."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.data.events import CANONICAL, REQUIRED, Columns, EventLogError

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


def column_names(file: str, format: str = "auto") -> list[str]:
    """The columns of one Parquet or CSV file (its schema or header only); ``format``: auto (by extension),
    parquet or csv."""
    if format == "csv" or (format == "auto" and file.endswith(".csv")):
        return pacsv.open_csv(file).schema.names
    return pq.read_schema(file).names


def column_findings(file: str, columns: Columns, format: str = "auto") -> tuple[list[str], list[str]]:
    """(warnings, ignored columns) for one file: a canonical field mapped to a column the file lacks while
    another column looks like it, and the columns nothing reads."""
    found = column_names(file, format)
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


def check_columns(files: list[str], columns: Columns, strict: bool = False, format: str = "auto") -> None:
    """Warn (or, strict, fail) about look-alike columns left unmapped; say which columns are ignored."""
    if not files:
        return
    warnings, ignored = column_findings(files[0], columns, format)
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


# the data-quality thresholds (data.<key>): each a share of a file's rows
QUALITY_LIMITS = ("max_null_share", "max_bad_row_share", "max_future_share", "max_unknown_event_type_share",
                  "max_unmapped_share")
REASON_COLUMN = {"null_customer": "customer_id", "unaddressable_customer": "customer_id",
                 "null_event_type": "event_type", "null_ts": "ts", "ts_not_finite": "ts", "ts_out_of_range": "ts"}
UNMAPPED = ("unmapped_customer", "conflicting_customer")  # the id map's drops: judged by max_unmapped_share


class DataQualityError(EventLogError):
    """A file's data-quality figure over its threshold (data.max_*): the run stops before training."""


def check_quality(quality: dict, limits: dict[str, float], columns: Columns | dict[str, Columns]) -> None:
    """Raise DataQualityError naming the file, the column, the share and the key to raise, for every figure
    of a file over its threshold. quality: engine.data.quality's to_dict(); limits: QUALITY_LIMITS -> share;
    columns: the log's column mapping, or each source's by name."""
    failures = []
    for entry in quality["files"]:
        rows = entry["rows_read"]
        mapping = columns.get(entry.get("source"), Columns()) if isinstance(columns, dict) else columns
        for key, field, n, what, hint in _figures(entry, quality):
            if n > limits[key] * rows:
                failures.append(f"{entry['file']}: column '{getattr(mapping, field)}': {_share(n / rows)} of rows "
                                f"({n:,} of {rows:,}) {what}, over data.{key}={limits[key]:g} ({hint}; or raise "
                                f"data.{key} to accept it)")
    if failures:
        raise DataQualityError(" | ".join(failures))


def _figures(entry: dict, quality: dict) -> list[tuple[str, str, int, str, str]]:
    """(threshold key, column, rows, what they are, what to check) of one file's figures."""
    out = [("max_null_share", field, entry["nulls"][field], "are null or empty",
            f"is data.columns.{field} the right column?") for field in REQUIRED]
    dropped = {reason: n for reason, n in entry["dropped"].items() if n and reason not in UNMAPPED}
    unmapped, conflicting = (entry["dropped"].get(reason, 0) for reason in UNMAPPED)
    if unmapped or conflicting:
        out.append(("max_unmapped_share", "customer_id", unmapped + conflicting,
                    f"have a key the id map lacks ({unmapped:,}) or maps to several customers ({conflicting:,}), "
                    "dropped", "is data.id_map the table of this source's keys, and data.id_map.key its key column?"))
    if dropped:
        worst = REASON_COLUMN[max(dropped, key=dropped.get)]
        why = ", ".join(f"{n:,} {reason.replace('_', ' ')}" for reason, n in dropped.items())
        out.append(("max_bad_row_share", worst, sum(dropped.values()), f"are bad rows, dropped: {why}",
                    f"a wrong timestamp unit or column? expected times from {quality['ts_floor'][:10]} to a day "
                    "past the run" if worst == "ts" else f"is data.columns.{worst} the right column?"))
    out.append(("max_future_share", "ts", entry["ts_in_future"], f"are dated after the run started ({quality['run_at']})",
                "a time zone or clock error? timestamps without a zone are read as UTC"))
    types = ", ".join(f"'{name}' {n:,}" for name, n in entry["unknown_types"].items())
    out.append(("max_unknown_event_type_share", "event_type", entry["unknown_event_type"],
                f"have an event type that is no purchase, return or known type ({types})",
                "is data.columns.event_type the right column? name your types in data.purchase_types, "
                "data.return_types or data.known_types"))
    return out


def _share(share: float) -> str:
    return f"{share:.1%}" if share >= 0.1 else f"{share:.2%}"
