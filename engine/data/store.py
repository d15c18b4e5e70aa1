"""The packed per-customer sequence store: events sorted by customer and time, one offsets array plus one
numpy array per field, saved as .npy files that re-open memory-mapped.

Layout on disk (``DIR``): ``customers.arrow`` (customer_id strings, Arrow IPC), ``offsets.npy`` (int64
[n_customers + 1]), ``<field>.npy`` per event field, ``vocabs.json`` and ``store.json`` (schema, purchase and
return types, counts). Categorical fields hold ids into their vocabulary, in the narrowest of int8, int16 and
int32 that holds it (a 100k-customer log: 71 MB less than int32 throughout); id 0 is unknown (null, unseen,
or rarer than the frequency floor). ``amount`` and ``quantity`` are float32 with NaN for unknown.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from engine.data.events import CATEGORICAL, NUMERIC, release_arrow_memory
from engine.data.quality import LogQuality
from engine.data.sort import sort_events
from engine.data.vocab import BLOCK, UNKNOWN, DictionaryCodes, encode, vocab_from_counts

log = logging.getLogger(__name__)

FIELDS = ("ts",) + CATEGORICAL + NUMERIC
STORE_VERSION = 1


@dataclass
class SequenceStore:
    """Events of many customers, packed. Customer ``i`` owns events ``offsets[i]:offsets[i+1]``, in time order.

    customer_ids: pyarrow string array [n_customers]; offsets: int64 [n_customers + 1];
    columns: {"ts": int64 epoch s, "event_type"|"item_id"|"category"|"channel": int8/16/32 ids (id_dtype),
    "amount"|"quantity": float32, NaN unknown} each [n_events]; vocabs: {field: [token, ...]}, token 0 = UNKNOWN.
    attributes: float32 [n_customers, width], the customers' static model inputs (engine.data.attributes), or
    None; it follows the customer rows through every slice and is saved with the store.
    """

    customer_ids: pa.Array
    offsets: np.ndarray
    columns: dict[str, np.ndarray]
    vocabs: dict[str, list[str]]
    purchase_types: list[str] = field(default_factory=lambda: ["purchase"])
    return_types: list[str] = field(default_factory=lambda: ["return"])
    attributes: np.ndarray | None = None

    @property
    def n_customers(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return int(self.offsets[-1])

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def type_ids(self, types: list[str]) -> np.ndarray:
        index = {t: i for i, t in enumerate(self.vocabs["event_type"])}
        return np.array([index[t] for t in types if t in index], dtype=np.int32)

    def is_purchase(self) -> np.ndarray:
        """bool [n_events]: the event is of one of the purchase types."""
        return np.isin(self.columns["event_type"], self.type_ids(self.purchase_types))

    def is_return(self) -> np.ndarray:
        return np.isin(self.columns["event_type"], self.type_ids(self.return_types))

    def customer_rows(self) -> np.ndarray:
        """int64 [n_events]: the customer row of each event."""
        return np.repeat(np.arange(self.n_customers, dtype=np.int64), self.lengths())

    def customer_index(self, ids) -> np.ndarray:
        """Rows of the given customer ids (int64, -1 for ids not in the store)."""
        rows = pc.index_in(pa.array(ids, pa.string()), value_set=self.customer_ids)
        return pc.fill_null(rows, -1).to_numpy(zero_copy_only=False).astype(np.int64)

    def time_range(self) -> tuple[int, int]:
        ts = self.columns["ts"]
        return (int(ts.min()), int(ts.max())) if len(ts) else (0, 0)

    # -- slicing -----------------------------------------------------------------------------------------
    def take(self, rows: np.ndarray) -> SequenceStore:
        """The store of the given customer rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # Event positions: for each taken customer, start + 0..length-1, built without a loop.
        event_idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        columns = {k: np.asarray(v[event_idx]) for k, v in self.columns.items()}
        attributes = None if self.attributes is None else np.asarray(self.attributes[rows])
        return self._with(self.customer_ids.take(pa.array(rows)), offsets, columns, attributes)

    def mask_events(self, keep: np.ndarray) -> SequenceStore:
        """The same customers (every row kept, possibly with no events) with only the events where keep."""
        csum = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        counts = csum[self.offsets[1:]] - csum[self.offsets[:-1]]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        columns = {k: np.asarray(v[keep]) for k, v in self.columns.items()}
        return self._with(self.customer_ids, offsets, columns)

    def before(self, cutoff: int) -> SequenceStore:
        """Events with ts < cutoff (epoch seconds): the history. Customer rows are kept, aligned with after()."""
        return self.mask_events(np.asarray(self.columns["ts"]) < cutoff)

    def after(self, cutoff: int, until: int | None = None) -> SequenceStore:
        """Events with cutoff <= ts (< until): the future. Customer rows are kept, aligned with before()."""
        ts = np.asarray(self.columns["ts"])
        keep = ts >= cutoff if until is None else (ts >= cutoff) & (ts < until)
        return self.mask_events(keep)

    def non_empty(self) -> SequenceStore:
        return self.take(np.flatnonzero(self.lengths() > 0))

    def _with(self, customer_ids, offsets, columns, attributes: np.ndarray | None = None) -> SequenceStore:
        """A store of these rows; ``attributes`` defaults to this store's (the same customer rows)."""
        attributes = self.attributes if attributes is None and len(customer_ids) == self.n_customers else attributes
        return SequenceStore(customer_ids, offsets, columns, self.vocabs, self.purchase_types, self.return_types,
                             attributes)

    # -- persistence ---------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the store to ``directory`` atomically (a temporary sibling renamed into place)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        feather.write_feather(pa.table({"customer_id": self.customer_ids}), tmp / "customers.arrow",
                              compression="uncompressed")
        arrays = {"offsets": self.offsets, **self.columns}
        if self.attributes is not None:
            arrays["attributes"] = np.asarray(self.attributes, dtype=np.float32)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # writes release the GIL
            list(pool.map(lambda name: np.save(tmp / f"{name}.npy", arrays[name]), arrays))
        (tmp / "vocabs.json").write_text(json.dumps(self.vocabs))
        meta = {"version": STORE_VERSION, "fields": list(self.columns), "n_customers": self.n_customers,
                "n_events": self.n_events, "purchase_types": self.purchase_types,
                "return_types": self.return_types}
        (tmp / "store.json").write_text(json.dumps(meta, indent=1))
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
        return directory

    @classmethod
    def open(cls, directory: str | os.PathLike, mmap: bool = True) -> SequenceStore:
        """Re-open a saved store without re-reading the log; arrays are memory-mapped when ``mmap``."""
        directory = Path(directory)
        meta_file = directory / "store.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"{directory}: not a sequence store (no store.json)")
        meta = json.loads(meta_file.read_text())
        mode = "r" if mmap else None
        columns = {name: np.load(directory / f"{name}.npy", mmap_mode=mode) for name in meta["fields"]}
        customers = feather.read_table(directory / "customers.arrow", memory_map=mmap)["customer_id"]
        attributes = directory / "attributes.npy"
        return cls(customers.combine_chunks(), np.load(directory / "offsets.npy"), columns,
                   json.loads((directory / "vocabs.json").read_text()),
                   meta["purchase_types"], meta["return_types"],
                   np.load(attributes, mmap_mode=mode) if attributes.exists() else None)


def build_store(
    events: pa.Table,
    purchase_types: list[str],
    return_types: list[str],
    dedupe: bool = True,
    min_count: int = 1,
    vocabs: dict[str, list[str]] | None = None,
) -> tuple[SequenceStore, int]:
    """Pack canonical events (see engine.data.events) into a SequenceStore, vectorized throughout.

    Customers are ordered by customer_id, their events by time (ties keep their log order). vocabs: reuse
    existing vocabularies (a trained model's) instead of building new ones; tokens unseen by them map to
    UNKNOWN. Returns (store, duplicates_removed)."""
    columns = dict(zip(events.column_names, events.columns, strict=True))
    return pack(columns, purchase_types, return_types, dedupe, min_count, vocabs)


def pack(
    events: dict[str, pa.ChunkedArray],
    purchase_types: list[str],
    return_types: list[str],
    dedupe: bool = True,
    min_count: int = 1,
    vocabs: dict[str, list[str]] | None = None,
    quality: LogQuality | None = None,
) -> tuple[SequenceStore, int]:
    """build_store over a dict of canonical columns that it empties as it goes: each Arrow column is freed
    as soon as its packed array exists, so the peak is about the log plus a few columns. ``quality`` (the
    read's, engine.data.quality) is given the out-of-order events and duplicates, by file and channel."""
    unsorted: dict[str, np.ndarray] = {}
    new_vocabs: dict[str, list[str]] = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # numpy and arrow release the GIL
        # Categorical ids are encoded in the pool while this thread finds the event order.
        encoding = {name: pool.submit(_encode, events, name, vocabs[name] if vocabs else None,
                                      1 if name == "event_type" else min_count) for name in CATEGORICAL}
        for name, dtype in [("ts", np.int64)] + [(name, np.float32) for name in NUMERIC]:
            unsorted[name] = _numpy(events.pop(name), dtype)
            release_arrow_memory()
        customer_ids, customer, counts = _customers(events)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        order = sort_events(customer, unsorted["ts"])
        del customer
        if len(order) < 2**31:  # half the bytes while the columns are put in order (20M events: 80 MB)
            order = order.astype(np.int32)
        if quality is not None:
            quality.sorted_order(order, offsets)
        for name in CATEGORICAL:  # popped: a finished future would keep its result alive
            new_vocabs[name], unsorted[name] = encoding.pop(name).result()
        columns = _in_order(unsorted, ("ts",) + NUMERIC, order, pool)  # 16 bytes per event
        columns.update(_in_order(unsorted, CATEGORICAL, order, pool))  # 16 bytes per event
        rows = order if quality is not None and len(quality.files) > 1 else None  # each duplicate's file
        del order
    columns = {name: columns[name] for name in FIELDS}

    removed = 0
    dup = _duplicates(offsets, columns) if dedupe else None
    if quality is not None:
        quality.packed_events(columns["channel"], new_vocabs["channel"], dup, rows)
    del rows
    if dedupe:
        removed = int(dup.sum())
        if removed:
            owner = np.searchsorted(offsets, np.flatnonzero(dup), side="right") - 1
            np.cumsum(counts - np.bincount(owner, minlength=len(counts)), out=offsets[1:])
            keep = ~dup
            for name in columns:  # one column at a time, so that only one extra copy is alive
                columns[name] = columns[name][keep]
    store = SequenceStore(customer_ids, offsets, columns, new_vocabs, list(purchase_types), list(return_types))
    return store, removed


def _customers(events: dict[str, pa.ChunkedArray]) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Pops events["customer_id"]; returns (customer_ids: string [n_customers] sorted, customer: int32
    [n_events] row of each event, counts: int64 [n_customers] events per customer)."""
    if events["customer_id"].null_count:
        raise ValueError("customer_id has nulls; read the log with engine.data.read_events")
    codes = DictionaryCodes.of(events.pop("customer_id"))
    counts = codes.counts()[:-1]
    present = np.flatnonzero(counts)  # a filtered dictionary may hold ids without events
    by_id = present[pc.array_sort_indices(codes.tokens.take(pa.array(present))).to_numpy()]
    row = np.full(len(codes.tokens) + 1, -1, dtype=np.int32)
    row[by_id] = np.arange(len(by_id), dtype=np.int32)
    customer = codes.map(row)
    customer_ids = codes.tokens.take(pa.array(by_id))
    del codes
    release_arrow_memory()
    return customer_ids, customer, counts[by_id]


def id_dtype(vocab_size: int) -> type:
    """The narrowest signed integer type that holds ids 0 .. vocab_size - 1."""
    return next(t for t in (np.int8, np.int16, np.int32, np.int64) if vocab_size <= np.iinfo(t).max + 1)


def _encode(events: dict, name: str, vocab: list[str] | None, min_count: int) -> tuple[list[str], np.ndarray]:
    """Pops events[name]; returns (vocab, ids [n] in log order, of id_dtype), building the vocab when it is None."""
    codes = DictionaryCodes.of(events.pop(name))
    if vocab is None:
        vocab = vocab_from_counts(codes.tokens, codes.counts()[:-1], min_count)
    lookup = np.zeros(len(codes.tokens) + 1, dtype=id_dtype(len(vocab)))  # the last entry: null -> UNKNOWN
    lookup[:-1] = encode(codes.tokens, vocab)
    ids = codes.map(lookup)
    del codes
    release_arrow_memory()
    return vocab, ids


def _numpy(column: pa.ChunkedArray, dtype: type) -> np.ndarray:
    """The column as one numpy array of ``dtype`` (null: NaN), filled chunk by chunk (no float64 copy)."""
    if column.num_chunks == 1 and column.null_count == 0 and column.type == pa.from_numpy_dtype(dtype):
        return column.chunk(0).to_numpy()
    out = np.empty(len(column), dtype=dtype)
    at = 0
    for chunk in column.chunks:
        out[at : at + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
        at += len(chunk)
    return out


def _in_order(unsorted: dict[str, np.ndarray], names: tuple[str, ...], order: np.ndarray,
              pool: ThreadPoolExecutor) -> dict[str, np.ndarray]:
    """Pops unsorted[name] [n] for each name; returns them in ``order``, contiguous. They are first packed
    into one record per event, so that the random reads cost one per event rather than one per field; the
    gather goes a block of events at a time, so it needs little memory beyond the result."""
    records = np.empty(len(order), dtype=[(name, unsorted[name].dtype) for name in names])
    for name in names:
        records[name] = unsorted.pop(name)
    out = {name: np.empty(len(order), dtype=records.dtype[name]) for name in names}

    def gather(start: int) -> None:
        block = np.take(records, order[start : start + BLOCK])
        for name, column in out.items():
            column[start : start + len(block)] = block[name]

    list(pool.map(gather, range(0, len(order), BLOCK)))
    return out


def _duplicates(offsets: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
    """bool [n_events]: the event equals an earlier one of its customer in every field. Input sorted by
    (customer, ts), so equal events share a (customer, ts) run; only rows in such runs are reordered to make
    them adjacent."""
    ts = columns["ts"]
    same = np.zeros(len(ts), dtype=bool)
    same[1:] = ts[1:] == ts[:-1]
    same[offsets[1:-1]] = False  # a customer's first event
    dup = np.zeros(len(ts), dtype=bool)
    if not same.any():
        return dup
    tied = same.copy()
    tied[:-1] |= same[1:]
    rows = np.flatnonzero(tied)
    run = np.cumsum(~same[rows])  # run id of each tied row
    fields = [columns[k][rows] for k in columns if k != "ts"]
    order = np.lexsort(fields[::-1] + [run])
    rows, run = rows[order], run[order]
    equal = run[1:] == run[:-1]
    for values in fields:
        values = values[order]
        same_value = values[1:] == values[:-1]
        if values.dtype.kind == "f":  # unknown (NaN) equals unknown
            same_value |= np.isnan(values[1:]) & np.isnan(values[:-1])
        equal &= same_value
    dup[rows[1:][equal]] = True
    return dup


__all__ = ["SequenceStore", "build_store", "pack", "UNKNOWN", "FIELDS"]
