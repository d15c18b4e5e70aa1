"""Timestamps in the forms event logs bring them, as int64 epoch seconds (UTC).

Native Parquet timestamps (any unit, any zone) and dates; ISO 8601 strings with a zone, without one (taken as
UTC, or as the source's time zone when it names one), date-only, with fractional seconds, or a mix; epoch
seconds or milliseconds as numbers or as strings (CSV). Times are cut to whole seconds. NaN and infinite
numbers come back null (the caller names them). A local time that a clock change skips is read as the first
instant after the change; one that it repeats, as the earlier of the two.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SHOW_ROWS = 5
MAX_SECONDS = 1e11  # a larger epoch number is milliseconds: as seconds it would be after year 5138
MAX_NUMBER = 1e17  # larger epoch numbers are clipped to it: still out of any range, and castable to int64


class UnparseableTimestamps(ValueError):
    """Strings that are neither ISO 8601 nor epoch numbers; ``rows`` holds the first (row, value) pairs."""

    def __init__(self, rows: list[tuple[int, str]]):
        super().__init__(f"cannot parse as timestamps: {rows}")
        self.rows = rows


def local(times, timezone: str | None):
    """Timestamps without a zone (wall-clock times in ``timezone``) as UTC ones; unchanged without a zone."""
    if timezone is None or times.type.tz is not None:
        return times
    return pc.assume_timezone(times, timezone=timezone, ambiguous="earliest", nonexistent="latest")


def epoch_seconds(column: pa.ChunkedArray, timezone: str | None = None) -> pa.ChunkedArray | pa.Array:
    """int64 epoch seconds [n] (null stays null); times that carry no zone are in ``timezone`` (UTC when None).
    Raises UnparseableTimestamps for strings that do not parse and TypeError for a column type that cannot
    hold times."""
    if pa.types.is_date(column.type):
        column = pc.cast(column, pa.timestamp("s"))
    if pa.types.is_timestamp(column.type):
        column = local(column, timezone)
    if pa.types.is_timestamp(column.type) and column.null_count == 0:
        seconds = _int64(column)
        seconds //= {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[column.type.unit]
        return pa.array(seconds)
    if pa.types.is_timestamp(column.type):
        unit_ts = pc.cast(column, pa.timestamp("s", tz=column.type.tz), safe=False)
        return pc.cast(unit_ts, pa.int64())
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return _epoch(column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        strings = column.combine_chunks().cast(pa.string())
        try:
            return _iso(strings, timezone)
        except pa.ArrowInvalid:
            pass
        try:  # CSV epoch numbers arrive as strings
            return _epoch(pc.cast(strings, pa.float64()))
        except pa.ArrowInvalid:
            raise UnparseableTimestamps(_unparseable(strings)) from None
    raise TypeError(f"{column.type} cannot hold timestamps")


def _int64(column: pa.ChunkedArray) -> np.ndarray:
    """int64 [n]: the raw values of a null-free 64-bit column, copied chunk by chunk into one array."""
    out = np.empty(len(column), dtype=np.int64)
    at = 0
    for chunk in column.chunks:
        out[at : at + len(chunk)] = chunk.view(pa.int64()).to_numpy()
        at += len(chunk)
    return out


def _epoch(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Epoch numbers as int64 seconds, the unit decided per value: milliseconds when too large to be seconds
    (after year 5138), so a few millisecond values in a column of seconds do not turn it all to 1970. NaN and
    infinite numbers are no time: null; a finite one beyond int64 seconds is kept far out of any range."""
    if pa.types.is_floating(values.type):
        finite = pc.is_finite(values)
        if not pc.all(finite).as_py():
            values = pc.if_else(finite, values, pa.scalar(None, values.type))
        if (pc.max(pc.abs(values)).as_py() or 0) > MAX_NUMBER:
            values = pc.max_element_wise(pc.min_element_wise(values, MAX_NUMBER, skip_nulls=False), -MAX_NUMBER,
                                         skip_nulls=False)
    if (pc.max(pc.abs(values)).as_py() or 0) <= MAX_SECONDS:
        return pc.cast(pc.floor(values) if pa.types.is_floating(values.type) else values, pa.int64())
    values = pc.cast(values, pa.float64())
    milliseconds = pc.greater(pc.abs(values), MAX_SECONDS)
    return pc.cast(pc.floor(pc.if_else(milliseconds, pc.divide(values, 1000.0), values)), pa.int64())


def _iso(col: pa.Array, timezone: str | None = None) -> pa.Array:
    """ISO 8601 strings, with or without a zone (no zone means ``timezone``, UTC when None), as int64 epoch
    seconds."""
    zoned = pc.fill_null(pc.match_substring_regex(col, r"(Z|[+-]\d\d:?\d\d)$"), False)
    if not pc.any(zoned).as_py():
        return _seconds(col, None, timezone)
    if pc.all(zoned).as_py():
        return _seconds(col, "UTC")
    naive = _seconds(pc.if_else(zoned, pa.scalar(None, pa.string()), col), None, timezone)
    aware = _seconds(pc.if_else(zoned, col, pa.scalar(None, pa.string())), "UTC")
    return pc.if_else(zoned, aware, naive)


def _seconds(col: pa.Array, tz: str | None, timezone: str | None = None) -> pa.Array:
    # parsed at microseconds so that fractional seconds are accepted, then truncated to seconds
    parsed = local(pc.cast(col, pa.timestamp("us", tz=tz)), timezone)
    return pc.cast(pc.cast(parsed, pa.timestamp("s", tz=parsed.type.tz), safe=False), pa.int64())


def _unparseable(col: pa.Array) -> list[tuple[int, str]]:
    """The rows whose string does not parse; found chunk by chunk so only the failing chunk is examined."""
    bad: list[tuple[int, str]] = []
    step = 65536
    for start in range(0, len(col), step):
        chunk = col.slice(start, step)
        try:
            _iso(chunk)
            continue
        except pa.ArrowInvalid:
            pass
        for i, value in enumerate(chunk.to_pylist()):
            if value is None:
                continue
            try:
                _iso(pa.array([value], pa.string()))
            except pa.ArrowInvalid:
                bad.append((start + i, value))
                if len(bad) >= SHOW_ROWS:
                    return bad
    return bad
