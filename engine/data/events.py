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
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.data.quality import LogQuality
from engine.data.sources import (
    FORMATS,
    IdMap,
    KeyMap,
    SourceError,
    check_timezone,
    event_type_map,
    key_map,
    read_id_map,
    translate,
)
from engine.data.timestamps import UnparseableTimestamps, epoch_seconds
from engine.data.vocab import rows_where

log = logging.getLogger(__name__)

REQUIRED = ("customer_id", "ts", "event_type")
CATEGORICAL = ("event_type", "item_id", "category", "channel")
NUMERIC = ("amount", "quantity")
OPTIONAL = ("item_id", "category", "amount", "quantity", "channel")
CANONICAL = REQUIRED + OPTIONAL
SHOW_ROWS = 5
STRING = pa.dictionary(pa.int32(), pa.string())  # the type of customer_id and the categorical columns
NUMBER = pa.float32()  # the type of amount and quantity
MIN_YEAR = 1990  # an earlier timestamp is a wrong unit or a placeholder (data.min_year)
TS_AHEAD = 86_400  # a timestamp more than a day past now is a wrong unit or a broken clock
MAX_NUMBER = 1e12  # a larger |amount| or |quantity| is corrupt input, not a sale
# event types that are neither purchases nor returns and still not unknown (data.known_types)
KNOWN_TYPES = ("view", "page_view", "product_view", "click", "search", "cart", "add_to_cart", "remove_from_cart",
               "wishlist", "checkout", "visit", "email_open", "email_click")


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
class Source:
    """One source of the log: its path (a file, a directory or a glob) and how to read it. ``format``: auto
    (by extension), parquet or csv; ``event_types``: its names -> canonical ones (e.g. {order: purchase});
    ``channel``: the channel of its rows that have none; ``timezone``: the zone of its timestamps that carry
    none (ISO strings without an offset, naive Parquet timestamps, dates; epoch numbers are UTC by definition);
    ``map_ids``: its customer column holds keys that the spec's id map turns into customer ids."""

    path: str
    name: str = "events"
    columns: Columns = field(default_factory=Columns)
    format: str = "auto"
    event_types: dict[str, str] = field(default_factory=dict)
    channel: str | None = None
    timezone: str | None = None
    map_ids: bool = False


@dataclass
class EventLogSpec:
    """How to read and validate a log. ``on_bad_rows`` decides rows with a null or empty customer or event
    type, or a null, non-finite or out-of-range timestamp (before ``min_year`` or more than a day past now).
    ``known_types``: the event types besides purchases and returns that the data-quality report does not
    count as unknown.

    One source is ``path`` read with ``columns``, ``event_types``, ``channel``, ``timezone`` and ``format``;
    several are ``sources`` (``path`` is then None), merged into one log, with ``id_map`` for the keys of
    those with map_ids."""

    path: str | None
    columns: Columns = field(default_factory=Columns)
    purchase_types: list[str] = field(default_factory=lambda: ["purchase"])
    return_types: list[str] = field(default_factory=lambda: ["return"])
    on_bad_rows: str = "fail"
    dedupe: bool = True
    min_year: int = MIN_YEAR
    known_types: list[str] = field(default_factory=lambda: list(KNOWN_TYPES))
    event_types: dict[str, str] = field(default_factory=dict)
    channel: str | None = None
    timezone: str | None = None
    format: str = "auto"
    sources: list[Source] = field(default_factory=list)
    id_map: IdMap | None = None

    def all_sources(self) -> list[Source]:
        """``sources``, or the one source of ``path``."""
        if self.sources:
            return list(self.sources)
        return [Source(str(self.path), "events", self.columns, self.format, dict(self.event_types), self.channel,
                       self.timezone)]

    @property
    def where(self) -> str:
        """The log's name in messages: its path, or its sources' paths."""
        return str(self.path) if not self.sources else ", ".join(s.path for s in self.sources)


@dataclass
class IngestReport:
    """What reading the log did: counts a user should see, never silent losses."""

    files: list[str]
    rows_read: int = 0
    dropped_null_customer: int = 0
    dropped_null_ts: int = 0
    duplicates_removed: int = 0
    dropped_null_event_type: int = 0
    dropped_bad_ts: int = 0  # not finite, or out of range: before min_year or more than TS_AHEAD past the read
    dropped_bad_customer: int = 0  # ids no request could name: longer than MAX_ID_LENGTH or with a control character
    dropped_unmapped_customer: int = 0  # keys of a map_ids source that the id map lacks (unmapped=drop)
    dropped_conflicting_customer: int = 0  # keys the id map maps to several customers
    quality: LogQuality | None = None  # the figures of data_quality.json (engine.data.quality)

    def summary(self) -> str:
        return (
            f"{self.rows_read} rows from {len(self.files)} file(s); dropped {self.dropped_null_customer} with "
            f"null customer_id, {self.dropped_null_ts} with null ts, {self.dropped_null_event_type} with null "
            f"event_type, {self.dropped_bad_ts} with ts out of range or not finite, {self.dropped_bad_customer} "
            f"with an unaddressable customer_id; removed {self.duplicates_removed} duplicates"
            + (f"; dropped {self.dropped_unmapped_customer} with a key the id map lacks and "
               f"{self.dropped_conflicting_customer} with a key it maps to several customers"
               if self.dropped_unmapped_customer or self.dropped_conflicting_customer else "")
        )


EXTENSIONS = {"auto": ("parquet", "pq", "csv"), "parquet": ("parquet", "pq"), "csv": ("csv",)}


def resolve_files(path: str | os.PathLike, format: str = "auto") -> list[str]:
    """A file, a directory (its *.parquet and *.csv files; with ``format``, those of that format) or a glob,
    as a sorted list of files."""
    path = str(path)
    if os.path.isdir(path):
        files = sorted(p for ext in EXTENSIONS[format] for p in glob.glob(os.path.join(path, f"*.{ext}")))
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


def _at(rows: np.ndarray, n: int) -> np.ndarray:
    """bool [n], True at ``rows``."""
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:SHOW_ROWS])
    more = f" and {len(rows) - SHOW_ROWS} more" if len(rows) > SHOW_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def is_csv(file: str, format: str = "auto") -> bool:
    """Whether ``file`` is read as CSV: by ``format``, or by its extension when that is auto."""
    return format == "csv" or (format == "auto" and file.endswith(".csv"))


def _read_file(file: str, source: Source) -> dict[str, pa.ChunkedArray] | _ParquetColumns:
    """One file's columns by canonical name (absent optional ones left out); a Parquet file's are read one at
    a time, as they are popped.

    Parquet string columns are read dictionary-encoded, so that repeated ids are never materialised."""
    columns = source.columns
    names = {getattr(columns, f): f for f in CANONICAL}
    csv = is_csv(file, source.format)
    try:
        if csv:
            # ids stay strings ('007' is not 7), timestamps are parsed by _parse_ts
            text = [columns.ts, columns.customer_id] + [getattr(columns, f) for f in CATEGORICAL]
            opts = pacsv.ConvertOptions(column_types={c: pa.string() for c in text}, strings_can_be_null=True)
            table = pacsv.read_csv(file, convert_options=opts)
            found = table.column_names
        else:
            schema = pq.read_schema(file)
            found = schema.names
    except (pa.ArrowInvalid, OSError) as err:
        raise EventLogError(f"{file}: cannot read as {'CSV' if csv else 'Parquet'}: {err}") from err
    missing = [getattr(columns, f) for f in REQUIRED if getattr(columns, f) not in found]
    if missing:
        raise EventLogError(
            f"{file}: missing required column(s) {missing} (found {found}; "
            f"map your names with data.columns.<field>=<your column>)"
        )
    if not csv:
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


def _parse_ts(column: pa.ChunkedArray, file: str, source: str, timezone: str | None = None
              ) -> pa.ChunkedArray | pa.Array:
    """The timestamp column as int64 epoch seconds (times without a zone in ``timezone``, UTC when None); an
    EventLogError naming the rows that do not parse."""
    try:
        return epoch_seconds(column, timezone)
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


def _canonical(raw: dict[str, pa.ChunkedArray] | _ParquetColumns, file: str, spec: EventLogSpec,
               report: IngestReport, quality: LogQuality, src: Source | None = None,
               keys: KeyMap | None = None) -> pa.Table:
    """Validate and convert one file (of source ``src``) to canonical columns, popping each from ``raw`` as it
    goes (so it is freed): maps its customer keys through ``keys`` and its event types and channel as the
    source says, applies the bad-row policy (see _bad_rows), checks amounts and quantities (see
    _check_numbers) and counts the file's data-quality figures."""
    src = src or spec.all_sources()[0]
    source = {f: getattr(src.columns, f) for f in CANONICAL}
    absent = [f for f in OPTIONAL if f not in raw]
    n = len(raw["customer_id"])
    report.rows_read += n
    cols = {"customer_id": _dictionary(raw.pop("customer_id"))}
    unmapped = conflicting = kept = None
    if keys is not None:
        cols["customer_id"], unmapped, conflicting, kept = keys.apply(cols["customer_id"])
    cols["ts"], not_finite = _timestamps(raw.pop("ts"), file, source["ts"], src.timezone)
    release_arrow_memory()
    for name in CATEGORICAL:
        cols[name] = _dictionary(raw.pop(name)) if name in raw else pa.nulls(n, STRING)
    for name in NUMERIC:
        cols[name] = _numeric(raw.pop(name), file, source[name]) if name in raw else pa.nulls(n, NUMBER)
        release_arrow_memory()
    cols = {k: v if isinstance(v, pa.ChunkedArray) else pa.chunked_array([v]) for k, v in cols.items()}
    if src.event_types:
        cols["event_type"] = translate(cols["event_type"], *event_type_map(src.event_types, "data"))
    if src.channel is not None:
        cols["channel"] = _fill(cols["channel"], str(src.channel))

    quality.begin(report.files.index(file), cols["channel"])
    quality.count("unmapped_kept", kept)
    bad = _bad_rows(cols, not_finite, file, spec, source, report, quality, unmapped, conflicting)
    quality.count("negative_amount", _check_numbers(cols, bad, file, spec, source))
    quality.count_file(cols, bad, absent)
    if bad.any():
        keep = pa.array(~bad)
        for name in cols:  # one column at a time, so that only one extra copy is alive
            cols[name] = pc.filter(cols[name], keep)
    quality.end(cols["customer_id"])
    return pa.table(cols)


def _fill(column: pa.ChunkedArray, value: str) -> pa.ChunkedArray:
    """A dictionary column with its nulls set to ``value`` (each chunk's dictionary gets it appended)."""
    chunks = []
    for chunk in column.chunks if len(column) else []:
        words = pa.concat_arrays([chunk.dictionary.cast(pa.string()), pa.array([value], pa.string())])
        indices = pc.fill_null(chunk.indices, pa.scalar(len(words) - 1, chunk.indices.type))
        chunks.append(pa.DictionaryArray.from_arrays(indices, words))
    return pa.chunked_array(chunks, STRING) if chunks else column


def _timestamps(column: pa.ChunkedArray, file: str, source: str, timezone: str | None = None
                ) -> tuple[pa.ChunkedArray | pa.Array, np.ndarray | None]:
    """(ts, not_finite): the column as int64 epoch seconds (see _parse_ts), and bool [n] the numbers that are
    no time (NaN or infinite, null in ts), or None where none is."""
    ts = _parse_ts(column, file, source, timezone)
    if ts.null_count == column.null_count:
        return ts, None
    return ts, _mask(pc.is_valid(column)) & _mask(pc.is_null(ts))


def _blank(column: pa.ChunkedArray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(null, empty): bool [n] each, or None where no row is; for a dictionary column, empty is a string of
    only whitespace. Only the dictionaries are searched for empty strings, so a column without any (or without
    nulls) costs no pass over its rows."""
    null = _mask(pc.is_null(column)) if column.null_count else None
    return null, rows_where(column, lambda words: pc.equal(pc.utf8_trim_whitespace(words), ""))


MAX_ID_LENGTH = 1024  # characters: what the service's requests accept as an id


def _unaddressable(column: pa.ChunkedArray) -> np.ndarray | None:
    """bool [n]: an id no request could name (longer than MAX_ID_LENGTH characters, or with a control
    character such as a newline); None where none is. Only the dictionaries are searched."""
    return rows_where(column, lambda words: pc.or_(pc.greater(pc.utf8_length(words), MAX_ID_LENGTH),
                                                   pc.match_substring_regex(words, "[\\x00-\\x1f\\x7f]")))


def _ts_out_of_range(ts: pa.ChunkedArray, start: int, end: int) -> np.ndarray | None:
    """bool [n]: a timestamp before ``start`` or after ``end`` (null is not out of range); None where none is."""
    low, high = pc.min_max(ts).values()
    if low.as_py() is None or (low.as_py() >= start and high.as_py() <= end):
        return None
    return _mask(pc.fill_null(pc.or_(pc.less(ts, start), pc.greater(ts, end)), False))


# (column, data-quality reason, IngestReport counter) of each kind of bad row, in the order they are checked
BAD_ROWS = (("customer_id", "null_customer", "dropped_null_customer"),
            ("event_type", "null_event_type", "dropped_null_event_type"),
            ("ts", "null_ts", "dropped_null_ts"),
            ("ts", "ts_not_finite", "dropped_bad_ts"),
            ("ts", "ts_out_of_range", "dropped_bad_ts"),
            ("customer_id", "unaddressable_customer", "dropped_bad_customer"))
UNMAPPED_ROWS = (("customer_id", "unmapped_customer", "dropped_unmapped_customer"),
                 ("customer_id", "conflicting_customer", "dropped_conflicting_customer"))


def _bad_rows(cols: dict, not_finite: np.ndarray | None, file: str, spec: EventLogSpec, source: dict,
              report: IngestReport, quality: LogQuality, unmapped: np.ndarray | None = None,
              conflicting: np.ndarray | None = None) -> np.ndarray:
    """bool [n]: rows with a null or empty customer or event type, a null, non-finite (``not_finite``) or
    out-of-range timestamp, or an id no request could name. With on_bad_rows=fail an EventLogError names the
    first such column and its rows; with drop they are counted (each row once, for its first reason).
    The rows whose key the id map lacks (``unmapped``) or maps to several customers (``conflicting``) are
    dropped and counted whatever on_bad_rows says: they are the map's policy, not bad input (the
    data.max_unmapped_share threshold judges them)."""
    end = quality.run_at + TS_AHEAD
    customer, event_type = _blank(cols["customer_id"]), _blank(cols["event_type"])
    null_ts = _mask(pc.is_null(cols["ts"])) if cols["ts"].null_count else None
    blank_customer, blank_type = _either(*customer), _either(*event_type)
    for name, mask in (("customer_id", blank_customer), ("event_type", blank_type), ("ts", null_ts)):
        quality.count(f"null_{name}", mask)
    if not_finite is not None:
        null_ts = null_ts & ~not_finite
    masks = (blank_customer, blank_type, null_ts, not_finite,
             _ts_out_of_range(cols["ts"], quality.floor, end), _unaddressable(cols["customer_id"]))
    words = (_blank_word(*customer), _blank_word(*event_type), "null", "not a finite number (NaN or infinite)",
             "out of range", f"longer than {MAX_ID_LENGTH} characters or with a control character (a newline, a tab)")
    expected = ("", "", "", "expected epoch seconds or milliseconds; ",
                f"expected between {time.strftime('%Y-%m-%d', time.gmtime(quality.floor))} and "
                f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(end))} UTC, a day past now; ",
                "no request could name such a customer; ")
    if spec.on_bad_rows != "drop":
        for (name, _, _), mask, word, hint in zip(BAD_ROWS, masks, words, expected, strict=True):
            if mask is not None and mask.any():
                raise EventLogError(f"{file}: column '{source[name]}': {word} in {_rows(mask)} "
                                    f"({hint}set data.on_bad_rows=drop to drop and count such rows)")
    bad = np.zeros(len(cols["ts"]), bool)
    for (_, reason, counter), mask in zip(BAD_ROWS + UNMAPPED_ROWS, masks + (unmapped, conflicting), strict=True):
        if mask is not None:
            first = mask & ~bad
            setattr(report, counter, getattr(report, counter) + int(first.sum()))
            quality.count(f"dropped_{reason}", first)
            bad |= mask
    return bad


def _either(null: np.ndarray | None, empty: np.ndarray | None) -> np.ndarray | None:
    return empty if null is None else null if empty is None else null | empty


def _blank_word(null: np.ndarray | None, empty: np.ndarray | None) -> str:
    has_null, has_empty = null is not None and null.any(), empty is not None and empty.any()
    return "null or empty" if has_null and has_empty else "empty" if has_empty else "null"


def _flagged(column: pa.ChunkedArray, bad: np.ndarray, test) -> np.ndarray:
    """int64 row numbers where ``test`` (a numpy chunk -> bool chunk) holds, rows about to be dropped left out;
    found chunk by chunk, so the whole column is never one more array."""
    starts = np.cumsum([0] + [len(chunk) for chunk in column.chunks])
    rows = np.concatenate([np.zeros(0, dtype=np.int64)] + [
        start + np.flatnonzero(test(chunk.to_numpy(zero_copy_only=False)))
        for start, chunk in zip(starts[:-1], column.chunks, strict=True)
    ])
    return rows[~bad[rows]]


def _of_types(cols: dict, rows: np.ndarray, types: list[str]) -> np.ndarray:
    """bool [len(rows)]: whether the event at each row is one of ``types``."""
    event_type = cols["event_type"].take(pa.array(rows, pa.int64()))
    return _mask(pc.fill_null(pc.is_in(event_type, value_set=pa.array(types, pa.string())), False))


def _check_numbers(cols: dict, bad: np.ndarray, file: str, spec: EventLogSpec, source: dict) -> np.ndarray:
    """Raise on an infinite or absurd amount or quantity, a negative amount outside the return types, or a
    negative quantity on a purchase; NaN and null are unknown, and rows about to be dropped (bad) are not
    checked. Returns int64 [m] the rows with a negative amount (returns, all of them).
    (numpy on each chunk: Arrow's min_max on float32 is several times slower than these passes.)"""
    n = len(bad)
    negative_amounts = np.zeros(0, dtype=np.int64)
    for name in NUMERIC:
        absurd = _flagged(cols[name], bad, lambda v: np.abs(v) > MAX_NUMBER)  # inf too, NaN not
        if len(absurd):
            raise EventLogError(
                f"{file}: column '{source[name]}': infinite or absurd value (|{name}| > {MAX_NUMBER:g}) in "
                f"{_rows(_at(absurd, n))} (expected a finite {name}, or empty for unknown)")
        negative = _flagged(cols[name], bad, lambda v: v < 0)  # NaN (unknown) is not negative
        if name == "amount":
            negative_amounts = negative
            wrong = negative[~_of_types(cols, negative, spec.return_types)]
            if len(wrong):
                raise EventLogError(
                    f"{file}: column '{source[name]}': negative amount on a non-return event in {_rows(_at(wrong, n))} "
                    f"(expected amount >= 0 unless event_type is one of data.return_types={list(spec.return_types)})"
                )
        else:
            wrong = negative[_of_types(cols, negative, spec.purchase_types)]
            if len(wrong):
                raise EventLogError(
                    f"{file}: column '{source[name]}': negative quantity on a purchase event in "
                    f"{_rows(_at(wrong, n))} (expected quantity >= 0 when event_type is one of "
                    f"data.purchase_types={list(spec.purchase_types)}; returns may be negative)"
                )
    return negative_amounts


def read_events(spec: EventLogSpec) -> tuple[pa.Table, IngestReport]:
    """Read, validate and concatenate every file of the log, in canonical columns.

    Returns (events, report): events is a pyarrow Table with the CANONICAL columns (customer_id and the
    categorical ones dictionary-encoded), in file order; duplicates are not removed here (the store removes
    them after sorting, where they are adjacent). report.quality holds the data-quality figures so far."""
    sources = _check_spec(spec)
    per_source = [resolve_files(s.path, s.format) for s in sources]
    files = [file for found in per_source for file in found]
    if len(set(files)) < len(files):
        twice = sorted({f for f in files if files.count(f) > 1})
        raise EventLogError(f"{twice[0]}: read by more than one of data.sources (each file belongs to one source)")
    names = [s.name for s, found in zip(sources, per_source, strict=True) for _ in found]
    check_id_types([(f, s) for s, found in zip(sources, per_source, strict=True) for f in found])
    try:
        ids = read_id_map(spec.id_map) if spec.id_map is not None and any(s.map_ids for s in sources) else None
    except SourceError as err:
        raise EventLogError(str(err)) from None
    floor = int(np.datetime64(f"{spec.min_year:04d}-01-01", "s").astype(np.int64))
    known = list(spec.purchase_types) + list(spec.return_types) + list(spec.known_types)
    report = IngestReport(files=files, quality=LogQuality(files, int(time.time()), floor, known, names))
    tables = []
    for source, found in zip(sources, per_source, strict=True):
        keys = key_map(ids, source.name, spec.id_map.unmapped) if source.map_ids else None
        for file in found:
            tables.append(_canonical(_read_file(file, source), file, spec, report, report.quality, source, keys))
    events = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if events.num_rows == 0 and report.rows_read:
        raise EventLogError(f"{spec.where}: every row is a bad row ({report.summary()}; a wrong column mapping or "
                            "timestamp unit?)")
    if events.num_rows == 0:
        raise EventLogError(f"{spec.where}: the event log is empty (no rows with a customer and a timestamp)")
    log.info("read %s", report.summary())
    return events, report


def _check_spec(spec: EventLogSpec) -> list[Source]:
    """The spec's sources; an EventLogError naming the key of a spec that cannot read a log."""
    if spec.on_bad_rows not in ("drop", "fail"):
        raise EventLogError(f"data.on_bad_rows={spec.on_bad_rows!r}: expected 'drop' or 'fail'")
    this_year = time.gmtime().tm_year
    if not 1 <= spec.min_year <= this_year:
        raise EventLogError(f"data.min_year={spec.min_year}: expected a year between 1 and {this_year}")
    if spec.sources and spec.path:
        raise EventLogError(f"data.path={spec.path} and data.sources are both set: give one log as data.path, or "
                            "every source (that one included) in data.sources")
    sources = spec.all_sources()
    names = [s.name for s in sources]
    for i, source in enumerate(sources):
        where = f"data.sources[{i}]" if spec.sources else "data"
        if not source.path:
            raise EventLogError(f"{where}.path: expected a file, directory or glob")
        if names.index(source.name) != i:
            raise EventLogError(f"{where}.name={source.name!r}: two sources have this name; give each its own")
        if source.format not in FORMATS:
            raise EventLogError(f"{where}.format={source.format!r}: expected one of {list(FORMATS)}")
        if source.map_ids and spec.id_map is None:
            raise EventLogError(f"{where}.map_ids=true but data.id_map.path is not set (the table that maps "
                                f"{source.name}'s keys to customer ids)")
        try:
            check_timezone(source.timezone, where)
            event_type_map(source.event_types, where)
        except SourceError as err:
            raise EventLogError(str(err)) from None
        fields: dict[str, list[str]] = {}
        for name in CANONICAL:
            fields.setdefault(getattr(source.columns, name), []).append(name)
        for column, mapped in fields.items():
            if len(mapped) > 1:
                raise EventLogError(f"{where}.columns maps the column '{column}' to {' and '.join(mapped)}; each "
                                    "field needs a column of its own (set one of them to another column)")
    return sources


ID_FIELDS = ("customer_id", "item_id")


def check_id_types(files: list[tuple[str, Source]]) -> None:
    """An EventLogError when an id column holds numbers in one file and strings in another (or integers and
    floats): 7, 7.0 and '7' would be three customers. files: (file, its source); the customer keys of a
    source whose ids the id map gives (map_ids) are not customer ids and are left out. Only the files'
    schemas are read; CSV ids are text."""
    seen: dict[str, tuple[str, str, str]] = {}  # field -> (first file, its kind, its type)
    for file, source in files if len(files) > 1 else []:
        csv = is_csv(file, source.format)
        try:
            schema = pacsv.open_csv(file).schema if csv else pq.read_schema(file)  # a CSV's header
        except (pa.ArrowInvalid, OSError):
            continue  # reading it says what is wrong
        for name in ID_FIELDS:
            if name == "customer_id" and source.map_ids:
                continue
            column = getattr(source.columns, name)
            if column not in schema.names:
                continue
            type_ = pa.string() if csv else schema.field(column).type
            type_ = type_.value_type if pa.types.is_dictionary(type_) else type_
            kind = ("string" if _is_string(type_) else "integer" if pa.types.is_integer(type_) else
                    "float" if pa.types.is_floating(type_) else str(type_))
            shown = "text (CSV)" if csv else str(type_)
            first = seen.setdefault(name, (file, kind, shown))
            if first[1] != kind:
                named = f"column '{column}'" + (f" ({name})" if column != name else "")
                raise EventLogError(
                    f"{file}: {named} holds {shown} ids but {first[0]} holds {first[2]} ids: the same id would "
                    f"be two different ones (7 and '7'); write {name} with one type in every file (e.g. as strings)")
