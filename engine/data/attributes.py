"""Customer attributes (one Parquet or CSV file, a row per customer): read and validate, encode as static
model inputs, describe segments.

The table read has ``customer_id`` (string) first, then the file's other columns as read. A customer with no
row, or a null value, is unknown, never an error: the encoder gives unknown its own input column.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.data.events import MAX_ID_LENGTH, SHOW_ROWS

log = logging.getLogger(__name__)

NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"  # a string column is numeric when every value matches
TOP = 3  # values shown per categorical column and segment


class AttributesError(ValueError):
    """The attributes file is not what the engine expects; the message names the file, column and rows."""


@dataclass
class AttributeSpec:
    """Where the attributes are and how to use them. ``report_only``: columns that describe segments but never
    enter the model (protected attributes); ``drop``: columns never read; ``max_categories``: per categorical
    column, the most frequent values keep a model column of their own, the rest share "other"."""

    path: str
    id_column: str = "customer_id"
    report_only: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    max_categories: int = 20


def _rows(rows: np.ndarray) -> str:
    shown = ", ".join(str(r) for r in rows[:SHOW_ROWS])
    more = f" and {len(rows) - SHOW_ROWS} more" if len(rows) > SHOW_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _header(file: str) -> list[str]:
    """The file's column names, read from its Parquet schema or its CSV header line alone."""
    try:
        if not file.endswith(".csv"):
            return pq.read_schema(file).names
        with open(file, "rb") as text:  # the header line alone: the rows may hold bytes of dropped columns
            return next(csv.reader([text.readline().decode("utf-8-sig")]), [])
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError, csv.Error) as err:
        kind = "CSV" if file.endswith(".csv") else "Parquet"
        raise AttributesError(f"{file}: cannot read as {kind}: {err} (expected one Parquet or CSV file)") from err


def _check_names(file: str, found: list[str], spec: AttributeSpec) -> None:
    """An AttributesError naming the key whose column is not in the file (or is the id, or both dropped and
    reported)."""
    if spec.id_column not in found:
        raise AttributesError(f"{file}: no id column '{spec.id_column}' (found {found}; name your customer id "
                              "column with data.attributes.id_column=<your column>)")
    for key in ("report_only", "drop"):
        for name in getattr(spec, key):
            if name not in found or name == spec.id_column:
                what = "is the id column" if name == spec.id_column else f"is not a column (found {found})"
                raise AttributesError(f"{file}: data.attributes.{key} names '{name}', which {what}")
    if set(spec.report_only) & set(spec.drop):
        raise AttributesError(f"{file}: {sorted(set(spec.report_only) & set(spec.drop))} in both "
                              "data.attributes.report_only and drop (a column never read describes nothing)")
    if spec.id_column != "customer_id" and "customer_id" in found and "customer_id" not in spec.drop:
        raise AttributesError(f"{file}: has a column 'customer_id' besides the id column '{spec.id_column}' "
                              "(add it to data.attributes.drop, or make it the id column)")
    if spec.max_categories < 0:
        raise AttributesError(f"data.attributes.max_categories={spec.max_categories}: expected 0 or more")


def _ids(column: pa.ChunkedArray, file: str, name: str) -> pa.ChunkedArray:
    """The id column as string [n]: integers as their decimal string, whole floats as integers; an
    AttributesError on a fraction, a type that is no id, or an id that is null, empty, unaddressable or repeated."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_floating(column.type):
        values = pc.fill_null(column, np.nan).to_numpy()
        known = ~np.isnan(values)
        fraction = known & ~(np.isfinite(values) & (values == np.floor(values)) & (np.abs(values) < 2.0**63))
        if fraction.any():
            rows = np.flatnonzero(fraction)
            raise AttributesError(f"{file}: column '{name}': {float(values[rows[0]])!r} in {_rows(rows)} is not a whole "
                                  "number (expected integer or text customer ids)")
        column = pa.chunked_array([pa.array(np.where(known, values, 0).astype(np.int64), mask=~known)])
    if not (pa.types.is_integer(column.type) or pa.types.is_string(column.type)
            or pa.types.is_large_string(column.type)):
        raise AttributesError(f"{file}: column '{name}' has type {column.type}; expected integer or text ids")
    ids = pc.cast(column, pa.string())
    checks = ((pc.fill_null(pc.equal(pc.utf8_trim_whitespace(ids), ""), True), "null or empty", ""),
              (pc.or_(pc.greater(pc.utf8_length(ids), MAX_ID_LENGTH),
                      pc.match_substring_regex(ids, "[\\x00-\\x1f\\x7f]")),
               f"longer than {MAX_ID_LENGTH} characters or with a control character", "no request could name it; "))
    for test, word, hint in checks:
        bad = pc.fill_null(test, False).to_numpy(zero_copy_only=False)
        if bad.any():
            raise AttributesError(f"{file}: column '{name}': id {word} in {_rows(np.flatnonzero(bad))} "
                                  f"({hint}expected a customer id on every row)")
    encoded = pc.dictionary_encode(ids).combine_chunks()
    codes = encoded.indices.to_numpy()
    counts = np.bincount(codes, minlength=len(encoded.dictionary))
    if (counts > 1).any():
        first, others = codes[np.flatnonzero(counts[codes] > 1)[0]], int((counts > 1).sum()) - 1
        raise AttributesError(f"{file}: column '{name}': id {encoded.dictionary[first].as_py()!r} is in "
                              f"{_rows(np.flatnonzero(codes == first))} ({f'{others} more ids repeat; ' if others else ''}"
                              "expected one row per customer)")
    return ids


def check_spec(spec: AttributeSpec) -> list[str]:
    """The file's columns, read from its header alone; an AttributesError when the file is missing or lacks a
    column the spec names (a run checks this before it reads the event log)."""
    file = str(spec.path)
    if not os.path.isfile(file):
        raise AttributesError(f"{file}: no such file (expected one Parquet or CSV file of customer attributes; "
                              "set data.attributes.path)")
    found = _header(file)
    _check_names(file, found, spec)
    return found


def read_attributes(spec: AttributeSpec) -> pa.Table:
    """The attributes file as a Table: ``customer_id`` string [n] first, then the file's columns as read, less
    ``spec.drop`` (never read: a Parquet projection, CSV include_columns)."""
    file = str(spec.path)
    found = check_spec(spec)
    wanted = [c for c in found if c not in spec.drop]
    try:
        if file.endswith(".csv"):  # ids stay text ('007' is not 7); an empty cell is unknown
            opts = pacsv.ConvertOptions(include_columns=wanted, column_types={spec.id_column: pa.string()},
                                        strings_can_be_null=True)
            table = pacsv.read_csv(file, convert_options=opts)
        else:
            table = pq.read_table(file, columns=wanted)
    except (pa.ArrowInvalid, OSError) as err:
        raise AttributesError(f"{file}: cannot read: {err}") from err
    ids = _ids(table[spec.id_column], file, spec.id_column)
    table = table.drop_columns([spec.id_column]).add_column(0, "customer_id", ids)
    log.info("read the attributes of %d customers (%s) from %s", table.num_rows, table.column_names[1:], file)
    return table


def _decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _text(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """A categorical column as string [n], empty (or only whitespace) as null."""
    column = _decoded(column)
    try:
        text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise AttributesError(f"attributes column '{name}' has type {column.type}, which is neither numbers nor "
                              f"text ({err}; add it to data.attributes.drop)") from err
    return pc.if_else(pc.equal(pc.utf8_trim_whitespace(text), ""), pa.scalar(None, pa.string()), text)


def _is_numeric(column: pa.ChunkedArray, name: str) -> bool:
    """Numbers (integer, float, bool, decimal), or text whose every non-null value parses as a number."""
    t = _decoded(column).type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t):
        return True
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return False
    text = pc.utf8_trim_whitespace(_text(column, name))
    return text.null_count < len(text) and pc.all(pc.match_substring_regex(text, NUMBER)).as_py()


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """float64 [n]; null, non-finite and text that is no number as NaN."""
    column = _decoded(column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = pc.utf8_trim_whitespace(column)
        column = pc.if_else(pc.match_substring_regex(text, NUMBER), text, pa.scalar(None, text.type))
    values = pc.fill_null(pc.cast(column, pa.float64()), np.nan).to_numpy()
    return np.where(np.isfinite(values), values, np.nan)


def lookup(ids: pa.Array | pa.ChunkedArray, customer_ids) -> np.ndarray:
    """int64 [len(customer_ids)]: each customer's position in ``ids`` (string, e.g. a table's customer_id), -1
    where it has none. customer_ids: a list, numpy or Arrow array of strings (numbers as decimal strings)."""
    wanted = customer_ids if isinstance(customer_ids, (pa.Array, pa.ChunkedArray)) else pa.array(customer_ids)
    wanted = wanted.cast(wanted.type.value_type) if pa.types.is_dictionary(wanted.type) else wanted
    wanted = wanted if pa.types.is_string(wanted.type) else pc.cast(wanted, pa.string())
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    return pc.fill_null(pc.index_in(wanted, value_set=ids), -1).to_numpy().astype(np.int64)


@dataclass
class AttributeEncoder:
    """Attributes -> float32 model inputs. Numeric columns: standardised, 0 when unknown, plus a ":missing"
    indicator; categorical: one-hot over ``vocab[column]`` plus "other" and "unknown". Fitted on the training
    customers, saved as JSON (to_dict) in the bundle."""

    numeric: list[str]
    categorical: list[str]
    report_only: list[str]
    means: list[float]
    stds: list[float]
    vocab: dict[str, list[str]]

    @classmethod
    def fit(cls, table: pa.Table, report_only: list[str] = (), max_categories: int = 20,
            customer_ids=None, min_count: int = 5) -> AttributeEncoder:
        """Fit on the rows of ``table`` (read_attributes), only those of ``customer_ids`` when given. A
        categorical value held by fewer than ``min_count`` customers gets no column of its own ("other"), so the
        encoder saved in the bundle never names a value that points at a few customers."""
        if customer_ids is not None:
            rows = lookup(table["customer_id"], customer_ids)
            table = table.take(pa.array(np.unique(rows[rows >= 0])))
        names = [c for c in table.column_names if c != "customer_id"]
        for name in report_only:
            if name not in names:
                raise AttributesError(f"data.attributes.report_only names '{name}', which is not a column "
                                      f"(found {names})")
        model = [c for c in names if c not in report_only]
        numeric = [c for c in model if _is_numeric(table[c], c)]
        known = [v[~np.isnan(v)] for v in (_numbers(table[c]) for c in numeric)]
        means = [float(v.mean()) if len(v) else 0.0 for v in known]
        stds = [float(v.std()) if len(v) and v.std() > 0 else 1.0 for v in known]  # a constant: 1
        vocab = {}
        for c in (c for c in model if c not in numeric):
            counts = pc.value_counts(_text(table[c], c))
            counts = counts.filter(pc.and_(pc.is_valid(counts.field("values")),
                                           pc.greater_equal(counts.field("counts"), min_count)))
            tokens = counts.field("values").to_numpy(zero_copy_only=False).astype(str)
            order = np.lexsort((tokens, -counts.field("counts").to_numpy()))
            vocab[c] = [str(t) for t in tokens[order][:max_categories]]
        return cls(numeric, [c for c in model if c not in numeric], list(report_only), means, stds, vocab)

    @property
    def names(self) -> list[str]:
        """A name per model input column, in matrix order."""
        names = [n for c in self.numeric for n in (c, f"{c}:missing")]
        return names + [n for c in self.categorical for n in
                        [f"{c}={v}" for v in self.vocab[c]] + [f"{c}=other", f"{c}=unknown"]]

    @property
    def width(self) -> int:
        return 2 * len(self.numeric) + sum(len(self.vocab[c]) + 2 for c in self.categorical)

    def matrix(self, table: pa.Table, customer_ids) -> np.ndarray:
        """float32 [len(customer_ids), width], row i the inputs of customer_ids[i] (see names); a customer with
        no row in ``table`` is unknown in every column. Values are computed per table row, then gathered."""
        absent = [c for c in self.numeric + self.categorical if c not in table.column_names]
        if absent:
            raise AttributesError(f"the attributes have no column(s) {absent}, which the model was trained with "
                                  f"(found {table.column_names[1:]})")
        rows = lookup(table["customer_id"], customer_ids)  # -1 (absent) picks the unknown appended last
        out = np.zeros((len(rows), self.width), np.float32)
        for j, (c, mean, std) in enumerate(zip(self.numeric, self.means, self.stds, strict=True)):
            values = np.append(_numbers(table[c]), np.nan)[rows]
            missing = np.isnan(values)
            out[:, 2 * j] = np.where(missing, 0.0, (values - mean) / std)
            out[:, 2 * j + 1] = missing
        start = 2 * len(self.numeric)
        for c in self.categorical:  # a value not in the vocab is "other" (len(vocab)), null is "unknown"
            text, other = _text(table[c], c), len(self.vocab[c])
            codes = pc.fill_null(pc.index_in(text, value_set=pa.array(self.vocab[c], pa.string())), other)
            codes = np.where(pc.is_null(text).to_numpy(zero_copy_only=False), other + 1, codes.to_numpy())
            out[np.arange(len(rows)), start + np.append(codes, other + 1)[rows]] = 1.0
            start += other + 2
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AttributeEncoder:
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in d]
        if missing:
            raise AttributesError(f"attribute encoder: missing key(s) {missing} (expected AttributeEncoder.to_dict())")
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})

    def describe(self, table: pa.Table, customer_ids, labels: np.ndarray, k: int, min_count: int = 5) -> list[dict]:
        """Per segment 0..k-1 (labels: int [len(customer_ids)]; others ignored): its size, the share of it with
        an attributes row, and per column (model and report_only alike, as far as the table has them) either
        the top values by lift over the labelled base (share in segment / share in base, among customers whose
        value is known; values held by fewer than ``min_count`` of the segment left out) or the segment's
        mean against the base's."""
        labels = np.asarray(labels, np.int64)
        if len(labels) != len(customer_ids):
            raise AttributesError(f"describe: {len(labels)} labels for {len(customer_ids)} customers")
        rows = lookup(table["customer_id"], customer_ids)
        valid = (labels >= 0) & (labels < k)
        size = np.bincount(labels[valid], minlength=k)
        known = np.bincount(labels[valid & (rows >= 0)], minlength=k)
        out = [{"segment": s, "size": int(size[s]), "known_share": _share(known[s], size[s]), "columns": {}}
               for s in range(k)]
        for c in [c for c in self.numeric + self.categorical + self.report_only if c in table.column_names]:
            numeric = c in self.numeric or (c in self.report_only and _is_numeric(table[c], c))
            summary = _numeric_summary if numeric else _categorical_summary
            for segment, column in zip(out, summary(table[c], c, rows, labels, valid, size, k, min_count),
                                       strict=True):
                segment["columns"][c] = column
        return out


def _share(part: float, whole: float) -> float:
    return round(float(part) / float(whole), 4) if whole else 0.0


def _numeric_summary(column, name, rows, labels, valid, size, k, min_count) -> list[dict]:
    values = np.append(_numbers(column), np.nan)[rows]
    ok = valid & ~np.isnan(values)
    sums, counts = np.bincount(labels[ok], values[ok], k), np.bincount(labels[ok], minlength=k)
    base = round(float(values[ok].mean()), 4) if ok.any() else None
    # a mean of fewer than min_count customers would publish their values: left out
    return [{"mean": round(float(sums[s] / counts[s]), 4) if counts[s] >= max(min_count, 1) else None, "base_mean": base,
             "known_share": _share(counts[s], size[s])} for s in range(k)]


def _categorical_summary(column, name, rows, labels, valid, size, k, min_count) -> list[dict]:
    encoded = pc.dictionary_encode(_text(column, name)).combine_chunks()
    tokens = encoded.dictionary.to_pylist()
    m = len(tokens)
    codes = np.append(pc.fill_null(encoded.indices, -1).to_numpy(), -1)[rows]
    ok = valid & (codes >= 0)
    counts = np.bincount(labels[ok] * m + codes[ok], minlength=k * m).reshape(k, m)
    known = counts.sum(axis=1)
    share = counts / np.maximum(known, 1)[:, None]
    lift = share / np.maximum(counts.sum(axis=0) / max(known.sum(), 1), 1e-12)
    out = []
    for s in range(k):
        order = [v for v in np.lexsort((-share[s], -lift[s])) if counts[s, v] >= max(min_count, 1)][:TOP]
        top = [{"value": tokens[v], "share": round(float(share[s, v]), 4), "lift": round(float(lift[s, v]), 3)}
               for v in order]
        out.append({"top": top, "known_share": _share(known[s], size[s])})
    return out
