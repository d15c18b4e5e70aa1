"""Read an event log (Parquet or CSV: a file, a directory, or a glob) into validated canonical columns.

The canonical schema: ``customer_id`` (string), ``ts`` (int64 epoch seconds, UTC), ``event_type`` (string),
and the optional ``item_id``, ``category``, ``channel`` (string), ``amount``, ``quantity`` (float32, the
precision the store keeps: read as float64 they took 8 bytes an event each, twice what was kept). The
string columns are dictionary-encoded (``STRING``), so a repeated id is stored once.
An optional column may be absent or null: that is unknown, not bad input.
"""

from __future__ import annotations

import glob
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.data.timestamps import UnparseableTimestamps, epoch_seconds

log = logging.getLogger(__name__)

REQUIRED = ("customer_id", "ts", "event_type")
CATEGORICAL = ("event_type", "item_id", "category", "channel")
NUMERIC = ("amount", "quantity")
OPTIONAL = ("item_id", "category", "amount", "quantity", "channel")
CANONICAL = REQUIRED + OPTIONAL
SHOW_ROWS = 5
STRING = pa.dictionary(pa.int32(), pa.string())  # the type of customer_id and the categorical columns
NUMBER = pa.float32()  # the type of amount and quantity


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


def release_arrow_memory() -> None:
    """Hand freed Arrow memory back to the system: the allocator keeps it for reuse otherwise, and the
    numpy arrays that replace Arrow columns cannot reuse it."""
    pa.default_memory_pool().release_unused()


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:SHOW_ROWS])
    more = f" and {len(rows) - SHOW_ROWS} more" if len(rows) > SHOW_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _read_file(file: str, spec: EventLogSpec) -> dict[str, pa.ChunkedArray] | _ParquetColumns:
    """One file's columns by canonical name (absent optional ones left out); a Parquet file's are read one at
    a time, as they are popped.

    Parquet string columns are read dictionary-encoded, so that repeated ids are never materialised."""
    names = {getattr(spec.columns, f): f for f in CANONICAL}
    is_csv = file.endswith(".csv")
    try:
        if is_csv:
            # ids stay strings ('007' is not 7), timestamps are parsed by _parse_ts
            text = [spec.columns.ts, spec.columns.customer_id] + [getattr(spec.columns, f) for f in CATEGORICAL]
            opts = pacsv.ConvertOptions(column_types={c: pa.string() for c in text}, strings_can_be_null=True)
            table = pacsv.read_csv(file, convert_options=opts)
            found = table.column_names
        else:
            schema = pq.read_schema(file)
            found = schema.names
    except (pa.ArrowInvalid, OSError) as err:
        raise EventLogError(f"{file}: cannot read as {'CSV' if is_csv else 'Parquet'}: {err}") from err
    missing = [getattr(spec.columns, f) for f in REQUIRED if getattr(spec.columns, f) not in found]
    if missing:
        raise EventLogError(
            f"{file}: missing required column(s) {missing} (found {found}; "
            f"map your names with data.columns.<field>=<your column>)"
        )
    if not is_csv:
        wanted = {names[c]: c for c in found if c in names}
        return _ParquetColumns(file, wanted, {c for c in wanted.values() if names[c] != "ts"
                                              and _is_string(schema.field(c).type)})
    release_arrow_memory()  # the reader's buffers
    return {names[c]: table[c] for c in table.column_names if c in names}


class _ParquetColumns:
    """One Parquet file's columns by canonical name, each read when first asked for and dropped when popped.

    _canonical converts the columns one after another, so only one raw column is alive beside the converted
    ones: reading every column first held them all at once (20M events: a 1.54 GB peak for 0.41 GB kept)."""

    def __init__(self, file: str, source: dict[str, str], strings: set[str]):
        self.file, self.source, self.strings = file, source, strings
        self.read: dict[str, pa.ChunkedArray] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.source

    def __getitem__(self, name: str) -> pa.ChunkedArray:
        if name not in self.read:
            column = self.source[name]
            try:
                self.read[name] = _read_parquet(self.file, [column], [column] if column in self.strings else [])[0]
            except (pa.ArrowInvalid, OSError) as err:
                raise EventLogError(f"{self.file}: cannot read column '{column}' as Parquet: {err}") from err
            release_arrow_memory()  # the reader's buffers
        return self.read[name]

    def pop(self, name: str) -> pa.ChunkedArray:
        column = self[name]
        del self.read[name], self.source[name]
        return column


def _read_parquet(file: str, columns: list[str], dictionary_columns: list[str]) -> pa.Table:
    """The file's row groups, read in parallel by contiguous blocks, one thread per block. Each thread frees
    its allocator cache when done: Arrow's own reader threads would keep a few hundred MB of it."""
    with pq.ParquetFile(file, read_dictionary=dictionary_columns) as parquet:
        n_groups = parquet.num_row_groups
        n_blocks = min(os.cpu_count() or 1, n_groups)
        if n_blocks <= 1:
            return parquet.read(columns=columns, use_threads=True)

    def read(groups: np.ndarray) -> pa.Table:
        with pq.ParquetFile(file, read_dictionary=dictionary_columns) as parquet:
            tables = [parquet.read_row_group(int(i), columns=columns, use_threads=False) for i in groups]
        release_arrow_memory()
        return pa.concat_tables(tables)

    with ThreadPoolExecutor(max_workers=n_blocks) as pool:
        groups = np.array_split(np.arange(n_groups), n_blocks)
        return pa.concat_tables(list(pool.map(read, groups)))


def _is_string(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _dictionary(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A string-like column as dictionary<int32, string> (the canonical type of ids and categories)."""
    if pa.types.is_dictionary(column.type):
        return column if column.type == STRING else pc.cast(column, STRING)
    return pc.dictionary_encode(column if _is_string(column.type) else pc.cast(column, pa.string()))


def _parse_ts(column: pa.ChunkedArray, file: str, source: str) -> pa.ChunkedArray | pa.Array:
    """The timestamp column as int64 epoch seconds; an EventLogError naming the rows that do not parse."""
    try:
        return epoch_seconds(column)
    except UnparseableTimestamps as err:
        shown = ", ".join(f"row {r}: {v!r}" for r, v in err.rows[:SHOW_ROWS])
        raise EventLogError(
            f"{file}: column '{source}': cannot parse as a timestamp ({shown}; "
            f"expected ISO 8601 like '2024-03-01T12:30:00Z' or epoch seconds)"
        ) from None
    except TypeError:
        raise EventLogError(
            f"{file}: column '{source}' has type {column.type}; expected a timestamp, ISO 8601 string or epoch"
        ) from None


def _numeric(column: pa.ChunkedArray, file: str, source: str) -> pa.ChunkedArray:
    """A numeric column (numbers, or CSV strings of numbers; empty is unknown) as float32."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type):
        return pc.cast(column, NUMBER, safe=False)  # float64 -> float32 rounds, as the store always did
    if _is_string(column.type):
        stripped = pc.utf8_trim_whitespace(column)
        numeric = pc.match_substring_regex(stripped, r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
        ok = pc.or_(pc.is_null(column), pc.fill_null(numeric, False)).to_numpy(zero_copy_only=False)
        if not ok.all():
            rows = np.flatnonzero(~ok)[:SHOW_ROWS]
            values = column.take(pa.array(rows)).to_pylist()
            shown = ", ".join(f"row {r}: {v!r}" for r, v in zip(rows, values, strict=True))
            raise EventLogError(f"{file}: column '{source}': not a number ({shown}; expected a numeric value or empty)")
        return pc.cast(pc.cast(stripped, pa.float64()), NUMBER, safe=False)
    raise EventLogError(f"{file}: column '{source}' has type {column.type}; expected numbers")


def _mask(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False) if len(column) else np.zeros(0, dtype=bool)


def _canonical(raw: dict[str, pa.ChunkedArray] | _ParquetColumns, file: str, spec: EventLogSpec, report: IngestReport) -> pa.Table:
    """Validate and convert one file's columns, popping each from ``raw`` as it goes (so it is freed); applies
    the bad-row policy to null customers and timestamps."""
    source = {f: getattr(spec.columns, f) for f in CANONICAL}
    n = len(raw["customer_id"])
    report.rows_read += n
    cols = {"customer_id": _dictionary(raw.pop("customer_id")), "ts": _parse_ts(raw.pop("ts"), file, source["ts"])}
    release_arrow_memory()
    for name in CATEGORICAL:
        cols[name] = _dictionary(raw.pop(name)) if name in raw else pa.nulls(n, STRING)
    for name in NUMERIC:
        cols[name] = _numeric(raw.pop(name), file, source[name]) if name in raw else pa.nulls(n, NUMBER)
        release_arrow_memory()
    cols = {k: v if isinstance(v, pa.ChunkedArray) else pa.chunked_array([v]) for k, v in cols.items()}

    null_customer = _mask(pc.is_null(cols["customer_id"])) if cols["customer_id"].null_count else np.zeros(n, bool)
    null_ts = _mask(pc.is_null(cols["ts"])) if cols["ts"].null_count else np.zeros(n, bool)
    bad = null_customer | null_ts
    if bad.any() and spec.on_bad_rows != "drop":
        which, mask = ("customer_id", null_customer) if null_customer.any() else ("ts", null_ts)
        raise EventLogError(
            f"{file}: column '{source[which]}': null in {_rows(mask)} "
            f"(set data.on_bad_rows=drop to drop and count such rows)"
        )
    _check_amounts(cols, bad, file, spec, source["amount"])
    if bad.any():
        report.dropped_null_customer += int(null_customer.sum())
        report.dropped_null_ts += int((null_ts & ~null_customer).sum())
        keep = pa.array(~bad)
        for name in cols:  # one column at a time, so that only one extra copy is alive
            cols[name] = pc.filter(cols[name], keep)
    return pa.table(cols)


def _check_amounts(cols: dict, bad: np.ndarray, file: str, spec: EventLogSpec, source: str) -> None:
    """Raise on a negative amount outside the return types; rows about to be dropped (bad) are not checked."""
    amount = cols["amount"]
    starts = np.cumsum([0] + [len(chunk) for chunk in amount.chunks])
    negative = np.concatenate([np.zeros(0, dtype=np.int64)] + [  # NaN (unknown) is not negative
        start + np.flatnonzero(chunk.to_numpy(zero_copy_only=False) < 0)
        for start, chunk in zip(starts[:-1], amount.chunks, strict=True)
    ])
    negative = negative[~bad[negative]]
    if not len(negative):
        return
    event_type = cols["event_type"].take(pa.array(negative))
    is_return = pc.is_in(event_type, value_set=pa.array(spec.return_types, pa.string()))
    wrong = negative[~_mask(pc.fill_null(is_return, False))]
    if len(wrong):
        mask = np.zeros(len(bad), dtype=bool)
        mask[wrong] = True
        raise EventLogError(
            f"{file}: column '{source}': negative amount on a non-return event in {_rows(mask)} "
            f"(expected amount >= 0 unless event_type is one of data.return_types={list(spec.return_types)})"
        )


def read_events(spec: EventLogSpec) -> tuple[pa.Table, IngestReport]:
    """Read, validate and concatenate every file of the log, in canonical columns.

    Returns (events, report): events is a pyarrow Table with the CANONICAL columns (customer_id and the
    categorical ones dictionary-encoded), in file order; duplicates are not removed here (the store removes
    them after sorting, where they are adjacent)."""
    if spec.on_bad_rows not in ("drop", "fail"):
        raise EventLogError(f"data.on_bad_rows={spec.on_bad_rows!r}: expected 'drop' or 'fail'")
    files = resolve_files(spec.path)
    report = IngestReport(files=files)
    tables = []
    for file in files:
        tables.append(_canonical(_read_file(file, spec), file, spec, report))
    events = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if events.num_rows == 0:
        raise EventLogError(f"{spec.path}: the event log is empty (no rows with a customer and a timestamp)")
    log.info("read %s", report.summary())
    return events, report

