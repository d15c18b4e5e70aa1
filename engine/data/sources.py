"""Several sources in one run: each with its own files, columns, event names, channel, clock and customer key,
merged into one timeline per customer (engine.data.events reads them; the store sorts the merged log).

A source whose customer column holds another system's key (a hashed email, a cookie, a POS card number) maps
it through an id-mapping table (``source_key -> customer_id``). A key the table does not hold, or holds
with several customers, is counted in data_quality.json and its rows dropped, never silently merged; with
``unmapped=keep`` an unmapped key stays a customer of its own, named ``<source>:<key>`` so that it cannot
collide with a mapped id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS = ("auto", "parquet", "csv")
UNMAPPED = ("drop", "keep")
SHOW_ROWS = 5


class SourceError(ValueError):
    """A source or id-mapping table that cannot be read as configured; the message names the key or file."""


@dataclass
class IdMap:
    """The id-mapping table: ``key`` holds a source's customer key, ``customer_id`` the customer it is.
    ``source``: an optional column naming the source each row belongs to (keys of different systems may
    collide); rows without one apply to every mapped source."""

    path: str
    key: str = "source_key"
    customer_id: str = "customer_id"
    source: str | None = None
    unmapped: str = "drop"


@dataclass
class KeyMap:
    """One source's keys (string [m], distinct), the customer of each (string [m]), and the keys that the
    table maps to more than one customer (string [c])."""

    keys: pa.Array
    customers: pa.Array
    conflicting: pa.Array
    unmapped: str = "drop"
    prefix: str = ""

    def apply(self, column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray | None, np.ndarray | None,
                                                      np.ndarray | None]:
        """(customer_id, unmapped, conflicting, kept): ``column`` (a dictionary column of keys) with every
        mapped key replaced by its customer; bool [n] the rows whose key the table lacks, those whose key it
        maps to several customers, and (unmapped=keep) those whose unmapped key became the customer
        ``prefix + key`` (None where none is). A blank key stays blank: a null customer, never one customer
        of all blanks. The keys are looked up once, in the column's unified dictionary (a Parquet file's row
        groups each bring their own)."""
        column = column.unify_dictionaries()
        words = column.chunk(0).dictionary.cast(pa.string()) if column.num_chunks else pa.array([], pa.string())
        at = pc.index_in(words, value_set=self.keys)
        conflicting = pc.is_in(words, value_set=self.conflicting)
        blank = pc.equal(pc.utf8_trim_whitespace(words), "")
        unmapped = pc.and_(pc.and_(pc.is_null(at), pc.invert(conflicting)), pc.invert(blank))
        keep = self.unmapped == "keep"
        other = (pc.if_else(blank, words, pc.binary_join_element_wise(pa.scalar(self.prefix), words, "")) if keep
                 else words)
        mapped = _recode(column, pc.if_else(pc.is_valid(at), pc.take(self.customers, pc.fill_null(at, 0)), other)
                         if len(self.keys) else other)
        flagged = _token_rows(column, unmapped)
        return mapped, None if keep else flagged, _token_rows(column, conflicting), flagged if keep else None



def _token_rows(column: pa.ChunkedArray, tokens: pa.Array) -> np.ndarray | None:
    """bool [n]: the rows of a column with one dictionary whose token is flagged in ``tokens`` (bool [d]);
    None where none is."""
    flagged = np.flatnonzero(pc.fill_null(tokens, False).to_numpy(zero_copy_only=False))
    if not len(flagged):
        return None
    out, start = np.zeros(len(column), bool), 0
    for chunk in column.chunks:
        codes = pa.array(flagged, chunk.indices.type)
        out[start : start + len(chunk)] = pc.fill_null(pc.is_in(chunk.indices, value_set=codes), False).to_numpy(
            zero_copy_only=False)
        start += len(chunk)
    return out


def _recode(column: pa.ChunkedArray, new: pa.Array) -> pa.ChunkedArray:
    """A column with one dictionary, its token i replaced by new[i]: the distinct new values become the
    dictionary (two tokens may become one value), so the rows are never materialised as strings."""
    distinct = pc.unique(new).drop_null()
    position = pc.cast(pc.index_in(new, value_set=distinct), pa.int32())
    chunks = [pa.DictionaryArray.from_arrays(pc.take(position, chunk.indices), distinct) for chunk in column.chunks]
    return pa.chunked_array(chunks, pa.dictionary(pa.int32(), pa.string()))


def translate(column: pa.ChunkedArray, keys: pa.Array, values: pa.Array) -> pa.ChunkedArray:
    """A dictionary column with each token found in ``keys`` replaced by the matching ``values`` entry; other
    tokens stay (an event-type mapping)."""
    column = column.unify_dictionaries()
    if not column.num_chunks:
        return column
    words = column.chunk(0).dictionary.cast(pa.string())
    at = pc.index_in(words, value_set=keys)
    return _recode(column, pc.if_else(pc.is_valid(at), pc.take(values, pc.fill_null(at, 0)), words))


def event_type_map(mapping: dict[str, str], where: str) -> tuple[pa.Array, pa.Array]:
    """(raw names, canonical names) of a source's ``event_types`` mapping, e.g. {order: purchase}."""
    for raw, canonical in mapping.items():
        if not str(raw) or not str(canonical):
            raise SourceError(f"{where}.event_types: {raw!r} -> {canonical!r}: expected non-empty event type names")
    return pa.array([str(k) for k in mapping], pa.string()), pa.array([str(v) for v in mapping.values()], pa.string())


def check_timezone(timezone: str | None, where: str) -> None:
    """A SourceError when ``timezone`` is not a name in the time-zone database (e.g. 'Europe/Berlin')."""
    if timezone is None:
        return
    try:
        pc.assume_timezone(pa.array([0], pa.timestamp("s")), timezone=str(timezone))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise SourceError(f"{where}.timezone={timezone!r}: not a time zone ({err}; expected a name like "
                          "'Europe/Berlin', 'America/New_York' or 'UTC')") from None


def _ids(column: pa.ChunkedArray, file: str, name: str) -> pa.Array:
    """An id column of the mapping table as strings: integers as their digits, as the event log's ids."""
    type_ = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if pa.types.is_floating(type_):
        raise SourceError(f"{file}: column '{name}' holds floats ({type_}); expected string or integer ids")
    strings = pc.cast(column, pa.string()).combine_chunks()
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(strings), ""), True).to_numpy(zero_copy_only=False)
    if blank.any():
        rows = np.flatnonzero(blank)
        more = f" and {len(rows) - SHOW_ROWS} more" if len(rows) > SHOW_ROWS else ""
        raise SourceError(f"{file}: column '{name}': null or empty in rows {', '.join(map(str, rows[:SHOW_ROWS]))}"
                          f"{more} (expected an id in every row of the id map)")
    return strings


def read_id_map(spec: IdMap) -> pa.Table:
    """The id-mapping table: key, customer_id (strings) and source (string or null), one row per distinct
    triple. A SourceError names the file and column when it is missing, unreadable or holds blank ids."""
    if spec.unmapped not in UNMAPPED:
        raise SourceError(f"data.id_map.unmapped={spec.unmapped!r}: expected one of {list(UNMAPPED)}")
    if not os.path.isfile(spec.path):
        raise SourceError(f"data.id_map.path={spec.path}: no such file (expected a Parquet or CSV table with "
                          f"columns '{spec.key}' and '{spec.customer_id}')")
    wanted = [spec.key, spec.customer_id] + ([spec.source] if spec.source else [])
    try:
        if spec.path.endswith(".csv"):
            names = pacsv.open_csv(spec.path).schema.names
            types = {c: pa.string() for c in wanted}
            table = pacsv.read_csv(spec.path, convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=[c for c in wanted if c in names], strings_can_be_null=True))
        else:
            names = pq.read_schema(spec.path).names
            table = pq.read_table(spec.path, columns=[c for c in wanted if c in names])
    except (pa.ArrowInvalid, OSError) as err:
        raise SourceError(f"{spec.path}: cannot read the id map: {err}") from None
    missing = [c for c in wanted if c not in names]
    if missing:
        raise SourceError(f"{spec.path}: the id map lacks column(s) {missing} (found {names}; set data.id_map.key, "
                          "data.id_map.customer_id and data.id_map.source to its columns)")
    columns = {"key": _ids(table[spec.key], spec.path, spec.key),
               "customer_id": _ids(table[spec.customer_id], spec.path, spec.customer_id),
               "source": (_blank_to_null(pc.cast(table[spec.source], pa.string()).combine_chunks()) if spec.source
                          else pa.nulls(table.num_rows, pa.string()))}
    return pa.table(columns).group_by(["key", "customer_id", "source"]).aggregate([])


def _blank_to_null(column: pa.Array) -> pa.Array:
    """A string column with its empty or whitespace-only values null (a blank source: every source)."""
    return pc.if_else(pc.equal(pc.utf8_trim_whitespace(column), ""), pa.scalar(None, pa.string()), column)


def key_map(table: pa.Table, source: str, unmapped: str = "drop") -> KeyMap:
    """The KeyMap of one source from read_id_map's table: its rows (and those without a source), each key's
    customer, and the keys that map to several customers."""
    rows = table.filter(pc.or_kleene(pc.is_null(table["source"]), pc.equal(table["source"], source)))
    pairs = rows.group_by(["key", "customer_id"]).aggregate([])
    per_key = pairs.group_by("key").aggregate([("customer_id", "count"), ("customer_id", "min")])
    several = pc.greater(per_key["customer_id_count"], 1)
    single = per_key.filter(pc.invert(several))
    return KeyMap(single["key"].combine_chunks(), single["customer_id_min"].combine_chunks(),
                  per_key.filter(several)["key"].combine_chunks(), unmapped, f"{source}:")
