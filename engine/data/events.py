"""Read an event log (Parquet or CSV: a file, a directory, or a glob) into validated canonical columns.

The canonical schema: ``customer_id`` (string), ``ts`` (int64 epoch seconds, UTC), ``event_type`` (string),
and the optional ``item_id``, ``category``, ``channel`` (string), ``amount``, ``quantity`` (float64).
An optional column may be absent or null: that is unknown, not bad input.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

REQUIRED = ("customer_id", "ts", "event_type")
CATEGORICAL = ("event_type", "item_id", "category", "channel")
NUMERIC = ("amount", "quantity")
OPTIONAL = ("item_id", "category", "amount", "quantity", "channel")
CANONICAL = REQUIRED + OPTIONAL
SHOW_ROWS = 5


class EventLogError(ValueError):
    """The event log is not what the engine expects; the message names the file, column and rows."""


@dataclass
class Columns:
    """Maps each canonical field to the column name in the user's log."""

    customer_id: str = "customer_id"
    ts: str = "ts"
    event_type: str = "event_type"
    item_id: str = "item_id"
    category: str = "category"
    amount: str = "amount"
    quantity: str = "quantity"
    channel: str = "channel"


@dataclass
class EventLogSpec:
    """How to read and validate a log. ``on_bad_rows`` decides rows with a null customer or timestamp."""

    path: str
    columns: Columns = field(default_factory=Columns)
    purchase_types: list[str] = field(default_factory=lambda: ["purchase"])
    return_types: list[str] = field(default_factory=lambda: ["return"])
    on_bad_rows: str = "fail"
    dedupe: bool = True


@dataclass
class IngestReport:
    """What reading the log did: counts a user should see, never silent losses."""

    files: list[str]
    rows_read: int = 0
    dropped_null_customer: int = 0
    dropped_null_ts: int = 0
    duplicates_removed: int = 0

    def summary(self) -> str:
        return (
            f"{self.rows_read} rows from {len(self.files)} file(s); dropped {self.dropped_null_customer} with "
            f"null customer_id, {self.dropped_null_ts} with null ts; removed {self.duplicates_removed} duplicates"
        )


def resolve_files(path: str | os.PathLike) -> list[str]:
    """A file, a directory (its *.parquet and *.csv files) or a glob, as a sorted list of files."""
    path = str(path)
    if os.path.isdir(path):
        files = sorted(p for ext in ("parquet", "pq", "csv") for p in glob.glob(os.path.join(path, f"*.{ext}")))
    elif any(ch in path for ch in "*?["):
        files = sorted(p for p in glob.glob(path) if os.path.isfile(p))
    elif os.path.isfile(path):
        files = [path]
    else:
        raise EventLogError(f"{path}: no such file or directory (expected a Parquet/CSV file, a directory or a glob)")
    if not files:
        raise EventLogError(f"{path}: matched no .parquet or .csv files")
    return files


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:SHOW_ROWS])
    more = f" and {len(rows) - SHOW_ROWS} more" if len(rows) > SHOW_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _read_file(file: str, spec: EventLogSpec) -> pa.Table:
    """One file's table with the user's columns renamed to canonical names (absent optional ones left out)."""
    names = {getattr(spec.columns, f): f for f in CANONICAL}
    try:
        if file.endswith(".csv"):
            opts = pacsv.ConvertOptions(
                column_types={spec.columns.ts: pa.string(), spec.columns.customer_id: pa.string()},
                strings_can_be_null=True,
            )
            table = pacsv.read_csv(file, convert_options=opts)
        else:
            schema = pq.read_schema(file)
            table = pq.read_table(file, columns=[c for c in schema.names if c in names])
    except (pa.ArrowInvalid, OSError) as err:
        raise EventLogError(f"{file}: cannot read as {'CSV' if file.endswith('.csv') else 'Parquet'}: {err}") from err
    missing = [getattr(spec.columns, f) for f in REQUIRED if getattr(spec.columns, f) not in table.column_names]
    if missing:
        raise EventLogError(
            f"{file}: missing required column(s) {missing} (found {table.column_names}; "
            f"map your names with data.columns.<field>=<your column>)"
        )
    keep = [c for c in table.column_names if c in names]
    return table.select(keep).rename_columns([names[c] for c in keep])


def _parse_ts(column: pa.ChunkedArray, file: str, source: str) -> pa.Array:
    """Timestamps (native, ISO 8601 strings, or epoch seconds/milliseconds) as int64 epoch seconds."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_timestamp(col.type):
        unit_ts = pc.cast(col, pa.timestamp("s", tz=col.type.tz), safe=False)
        return pc.cast(unit_ts, pa.int64())
    if pa.types.is_date(col.type):
        return pc.cast(pc.cast(col, pa.timestamp("s")), pa.int64())
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        values = pc.cast(col, pa.float64())
        # Epoch numbers: seconds, or milliseconds when they are too large to be seconds (after year 5138).
        scale = 1000.0 if (pc.max(pc.abs(values)).as_py() or 0) > 1e11 else 1.0
        return pc.cast(pc.floor(pc.divide(values, scale)), pa.int64())
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            return _cast_ts_strings(col)
        except pa.ArrowInvalid:
            bad = _unparseable_ts(col)
            shown = ", ".join(f"row {r}: {v!r}" for r, v in bad[:SHOW_ROWS])
            raise EventLogError(
                f"{file}: column '{source}': cannot parse as a timestamp ({shown}; "
                f"expected ISO 8601 like '2024-03-01T12:30:00Z' or epoch seconds)"
            ) from None
    raise EventLogError(f"{file}: column '{source}' has type {col.type}; expected a timestamp, ISO 8601 string or epoch")


def _cast_ts_strings(col: pa.Array) -> pa.Array:
    """ISO 8601 strings, with or without a zone (no zone means UTC), as int64 epoch seconds."""
    zoned = pc.fill_null(pc.match_substring_regex(col, r"(Z|[+-]\d\d:?\d\d)$"), False)
    if not pc.any(zoned).as_py():
        return pc.cast(pc.cast(col, pa.timestamp("s")), pa.int64())
    if pc.all(zoned).as_py():
        return pc.cast(pc.cast(col, pa.timestamp("s", tz="UTC")), pa.int64())
    naive = pc.cast(pc.cast(pc.if_else(zoned, pa.scalar(None, pa.string()), col), pa.timestamp("s")), pa.int64())
    aware = pc.if_else(zoned, col, pa.scalar(None, pa.string()))
    aware = pc.cast(pc.cast(aware, pa.timestamp("s", tz="UTC")), pa.int64())
    return pc.if_else(zoned, aware, naive)


def _unparseable_ts(col: pa.Array) -> list[tuple[int, str]]:
    """The rows whose string does not parse; found chunk by chunk so only the failing chunk is examined."""
    bad: list[tuple[int, str]] = []
    step = 65536
    for start in range(0, len(col), step):
        chunk = col.slice(start, step)
        try:
            _cast_ts_strings(chunk)
            continue
        except pa.ArrowInvalid:
            pass
        for i, value in enumerate(chunk.to_pylist()):
            if value is None:
                continue
            try:
                _cast_ts_strings(pa.array([value], pa.string()))
            except pa.ArrowInvalid:
                bad.append((start + i, value))
                if len(bad) >= SHOW_ROWS:
                    return bad
    return bad


def _numeric(column: pa.ChunkedArray, file: str, source: str) -> pa.Array:
    col = column.combine_chunks()
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_null(col.type):
        return pc.cast(col, pa.float64())
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
        stripped = pc.utf8_trim_whitespace(col)
        numeric = pc.match_substring_regex(stripped, r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
        ok = pc.or_(pc.is_null(col), pc.fill_null(numeric, False)).to_numpy(zero_copy_only=False)
        if not ok.all():
            rows = np.flatnonzero(~ok)[:SHOW_ROWS]
            shown = ", ".join(f"row {r}: {values[r]!r}" for r in rows)
            raise EventLogError(f"{file}: column '{source}': not a number ({shown}; expected a numeric value or empty)")
        return pc.cast(stripped, pa.float64())
    raise EventLogError(f"{file}: column '{source}' has type {col.type}; expected numbers")


def _canonical(table: pa.Table, file: str, spec: EventLogSpec, report: IngestReport) -> pa.Table:
    """Validate and convert one file's table; applies the bad-row policy to null customers and timestamps."""
    source = {f: getattr(spec.columns, f) for f in CANONICAL}
    n = table.num_rows
    cols: dict[str, pa.Array] = {}
    cols["customer_id"] = pc.cast(table["customer_id"].combine_chunks(), pa.string())
    cols["ts"] = _parse_ts(table["ts"], file, source["ts"])
    for name in CATEGORICAL:
        if name in table.column_names:
            cols[name] = pc.cast(table[name].combine_chunks(), pa.string())
        else:
            cols[name] = pa.nulls(n, pa.string())
    for name in NUMERIC:
        cols[name] = _numeric(table[name], file, source[name]) if name in table.column_names else pa.nulls(n, pa.float64())

    null_customer = pc.is_null(cols["customer_id"]).to_numpy(zero_copy_only=False)
    null_ts = pc.is_null(cols["ts"]).to_numpy(zero_copy_only=False)
    bad = null_customer | null_ts
    if bad.any():
        if spec.on_bad_rows != "drop":
            which = "customer_id" if null_customer.any() else "ts"
            mask = null_customer if which == "customer_id" else null_ts
            raise EventLogError(
                f"{file}: column '{source[which]}': null in {_rows(mask)} "
                f"(set data.on_bad_rows=drop to drop and count such rows)"
            )
        report.dropped_null_customer += int(null_customer.sum())
        report.dropped_null_ts += int((null_ts & ~null_customer).sum())
        keep = pa.array(~bad)
        cols = {k: pc.filter(v, keep) for k, v in cols.items()}

    amount = cols["amount"].to_numpy(zero_copy_only=False)
    negative = np.nan_to_num(amount, nan=0.0) < 0
    if negative.any():
        is_return = pc.is_in(cols["event_type"], pa.array(spec.return_types, pa.string()))
        wrong = negative & ~pc.fill_null(is_return, False).to_numpy(zero_copy_only=False)
        if wrong.any():
            raise EventLogError(
                f"{file}: column '{source['amount']}': negative amount on a non-return event in {_rows(wrong)} "
                f"(expected amount >= 0 unless event_type is one of data.return_types={list(spec.return_types)})"
            )
    return pa.table(cols)


def read_events(spec: EventLogSpec) -> tuple[pa.Table, IngestReport]:
    """Read, validate and concatenate every file of the log, in canonical columns.

    Returns (events, report): events is a pyarrow Table with the CANONICAL columns, in file order; duplicates
    are not removed here (the store removes them after sorting, where they are adjacent)."""
    if spec.on_bad_rows not in ("drop", "fail"):
        raise EventLogError(f"data.on_bad_rows={spec.on_bad_rows!r}: expected 'drop' or 'fail'")
    files = resolve_files(spec.path)
    report = IngestReport(files=files)
    tables = []
    for file in files:
        raw = _read_file(file, spec)
        report.rows_read += raw.num_rows
        tables.append(_canonical(raw, file, spec, report))
    events = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if events.num_rows == 0:
        raise EventLogError(f"{spec.path}: the event log is empty (no rows with a customer and a timestamp)")
    log.info("read %s", report.summary())
    return events, report

