"""The packed per-customer sequence store: events sorted by customer and time, one offsets array plus one
numpy array per field, saved as .npy files that re-open memory-mapped.

Layout on disk (``DIR``): ``customers.arrow`` (customer_id strings, Arrow IPC), ``offsets.npy`` (int64
[n_customers + 1]), ``<field>.npy`` per event field, ``vocabs.json`` and ``store.json`` (schema, purchase and
return types, counts). Categorical fields hold int32 ids into their vocabulary; id 0 is unknown (null, unseen,
or rarer than the frequency floor). ``amount`` and ``quantity`` are float32 with NaN for unknown.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from engine.data.events import CATEGORICAL, NUMERIC
from engine.data.vocab import UNKNOWN, build_vocab, encode
from engine.data.sort import sort_events

log = logging.getLogger(__name__)

FIELDS = ("ts",) + CATEGORICAL + NUMERIC
STORE_VERSION = 1


@dataclass
class SequenceStore:
    """Events of many customers, packed. Customer ``i`` owns events ``offsets[i]:offsets[i+1]``, in time order.

    customer_ids: pyarrow string array [n_customers]; offsets: int64 [n_customers + 1];
    columns: {"ts": int64 epoch s, "event_type"|"item_id"|"category"|"channel": int32 ids,
    "amount"|"quantity": float32, NaN unknown} each [n_events]; vocabs: {field: [token, ...]}, token 0 = UNKNOWN.
    """

    customer_ids: pa.Array
    offsets: np.ndarray
    columns: dict[str, np.ndarray]
    vocabs: dict[str, list[str]]
    purchase_types: list[str] = field(default_factory=lambda: ["purchase"])
    return_types: list[str] = field(default_factory=lambda: ["return"])

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
        return self._with(self.customer_ids.take(pa.array(rows)), offsets, columns)

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

    def _with(self, customer_ids, offsets, columns) -> SequenceStore:
        return SequenceStore(customer_ids, offsets, columns, self.vocabs, self.purchase_types, self.return_types)

    # -- persistence ---------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the store to ``directory`` atomically (a temporary sibling renamed into place)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        feather.write_feather(pa.table({"customer_id": self.customer_ids}), tmp / "customers.arrow",
                              compression="uncompressed")
        np.save(tmp / "offsets.npy", self.offsets)
        for name, values in self.columns.items():
            np.save(tmp / f"{name}.npy", values)
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
        return cls(customers.combine_chunks(), np.load(directory / "offsets.npy"), columns,
                   json.loads((directory / "vocabs.json").read_text()),
                   meta["purchase_types"], meta["return_types"])


def build_store(
    events: pa.Table,
    purchase_types: list[str],
    return_types: list[str],
    dedupe: bool = True,
    min_count: int = 1,
    vocabs: dict[str, list[str]] | None = None,
) -> tuple[SequenceStore, int]:
    """Pack canonical events (see engine.data.events) into a SequenceStore, vectorized throughout.

    vocabs: reuse existing vocabularies (a trained model's) instead of building new ones; tokens unseen by
    them map to UNKNOWN. Returns (store, duplicates_removed)."""
    customer = pc.dictionary_encode(events["customer_id"]).combine_chunks()
    customer_codes = customer.indices.to_numpy().astype(np.int64)
    ts = events["ts"].to_numpy().astype(np.int64)
    order = sort_events(customer_codes, ts)

    new_vocabs: dict[str, list[str]] = {}
    columns: dict[str, np.ndarray] = {"ts": ts[order]}
    for name in CATEGORICAL:
        values = events[name]
        if vocabs is not None:
            vocab = vocabs[name]
        else:
            vocab = build_vocab(values, min_count=1 if name == "event_type" else min_count)
        new_vocabs[name] = vocab
        columns[name] = encode(values, vocab)[order]
    for name in NUMERIC:
        columns[name] = events[name].to_numpy(zero_copy_only=False).astype(np.float32)[order]
    customer_codes = customer_codes[order]

    removed = 0
    if dedupe:
        dup = _duplicates(customer_codes, columns)
        removed = int(dup.sum())
        if removed:
            keep = ~dup
            customer_codes = customer_codes[keep]
            columns = {k: v[keep] for k, v in columns.items()}
    counts = np.bincount(customer_codes, minlength=len(customer.dictionary))
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    store = SequenceStore(customer.dictionary, offsets, columns, new_vocabs, list(purchase_types),
                          list(return_types))
    return store, removed


def _duplicates(customer: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
    """bool [n_events]: the event equals an earlier one in every field. Input sorted by (customer, ts), so
    equal events share a (customer, ts) run; only rows in such runs are reordered to make them adjacent."""
    ts = columns["ts"]
    same = np.zeros(len(ts), dtype=bool)
    same[1:] = (customer[1:] == customer[:-1]) & (ts[1:] == ts[:-1])
    dup = np.zeros(len(ts), dtype=bool)
    if not same.any():
        return dup
    tied = same.copy()
    tied[:-1] |= same[1:]
    rows = np.flatnonzero(tied)
    run = np.cumsum(~same[rows])  # run id of each tied row
    fields = [np.nan_to_num(columns[k][rows].astype(np.float64), nan=-np.inf) for k in columns if k != "ts"]
    order = np.lexsort(fields[::-1] + [run])
    rows, run = rows[order], run[order]
    equal = run[1:] == run[:-1]
    for values in fields:
        values = values[order]
        equal &= values[1:] == values[:-1]
    dup[rows[1:][equal]] = True
    return dup


__all__ = ["SequenceStore", "build_store", "UNKNOWN", "FIELDS"]
