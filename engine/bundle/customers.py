"""The per-customer part of a bundle and its erasure: embeddings, segments, forecast, store, index, plus the
segment sizes that depend on them (profiles, hierarchy).

Row numbering: erasure compacts. Erased rows are dropped from every file, the remaining rows keep their
relative order, and the index ids are shifted down (row r becomes r - number of erased rows below r), so
the documented invariant "row i of embeddings.parquet = row i of segments.parquet = row i of store/ = id i
in index.faiss" holds after any number of erasures and no file holds a hole or a placeholder.

Crash safety: the tombstone is durable before any file changes (see bundle.py); the files are then
rewritten one by one, each by temporary file + rename, the index first. A load that finds a tombstoned id
in a file finishes the job: every customer file is filtered by its own customer_id column, and the index,
which holds row numbers only, is either still numbered like the unfiltered embeddings.parquet (then the
erased rows are removed from it) or already rewritten (then it holds exactly the remaining rows).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.bundle.writer import BundleError, embeddings_table, fsync_dir, read_embeddings
from engine.data.store import SequenceStore
from engine.index.index import index_kind, load_index, rebuild_without, remove_ids
from engine.segment.hierarchy import Hierarchy

if TYPE_CHECKING:
    from engine.index.signature import SignatureFeatures, Weights

log = logging.getLogger(__name__)

EMBEDDINGS, SEGMENTS, FORECAST = "embeddings.parquet", "segments.parquet", "forecast.parquet"
PROFILES, HIERARCHY, INDEX, STORE = "profiles.parquet", "hierarchy.json", "index.faiss", "store"
RECOMMENDATIONS = "recommendations.parquet"  # many rows per customer (customer_id, item_id, rank, score)


def read_file(directory: Path, name: str, reader):
    """reader(directory / name), with any failure as a BundleError naming the directory and the file."""
    path = directory / name
    if not path.exists():
        raise BundleError(f"{directory}: missing {name} (not a complete bundle; rebuild it with train.py)")
    try:
        return reader(path)
    except Exception as err:  # parquet, numpy, FAISS and json each raise their own types
        raise BundleError(f"{directory}: cannot read {name}: {err}") from err


@dataclass(frozen=True)
class Customers:
    """Everything erasure changes, replaced as a whole (one reference swap): a reader that takes
    ``bundle.customers`` once sees one consistent version.

    ids: pyarrow string [n]; row: {customer_id: row}; embeddings: float32 [n, d], L2-normalised;
    segments / forecast: the parquet tables [n] (forecast None without a forecasting head); store: the
    SequenceStore of the n customers (memory-mapped after load); index: FAISS, ids 0..n-1; profiles: one
    row per segment; hierarchy: its ``sizes`` are customers per segment."""

    ids: pa.Array
    row: dict[str, int]
    embeddings: np.ndarray
    segments: pa.Table
    forecast: pa.Table | None
    store: SequenceStore
    index: faiss.Index
    profiles: pa.Table
    hierarchy: Hierarchy
    recommendations: pa.Table | None = None  # the batch recommendations, rows by customer_id
    cache: dict = field(default_factory=dict, compare=False, repr=False)  # derived from these customers only

    @property
    def n(self) -> int:
        return len(self.ids)

    def signature_features(self, as_of: int, weights: Weights) -> SignatureFeatures:
        """The seed-signature lookalike's features of these customers (engine.index.signature), with the
        factorisations ``weights`` reads, built from the store on first use. Erasure makes a new Customers,
        so an erased customer is never in them (nor in the factorisations)."""
        if self.cache.get("signature", (None, None))[0] != weights:
            from engine.index.signature import SignatureFeatures

            self.cache["signature"] = (weights, SignatureFeatures.from_store(self.store, as_of, weights=weights))
        return self.cache["signature"][1]

    def sequence_vectors(self, representation) -> tuple[np.ndarray, np.ndarray]:
        """The sequence encoder's part of the embeddings (a view; the embeddings themselves without a hybrid
        ``representation``) and its row norms, computed on first use: the signature lookalike's vector term
        reads both on every query."""
        if "sequence" not in self.cache:
            vectors = self.embeddings if representation is None else representation.sequence_part(self.embeddings)
            self.cache["sequence"] = (vectors, np.maximum(np.linalg.norm(vectors, axis=1), 1e-12))
        return self.cache["sequence"]

    def without(self, rows: np.ndarray) -> Customers:
        """The customers minus ``rows`` (int64), renumbered; nothing of self is modified."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        keep = np.ones(self.n, dtype=bool)
        keep[rows] = False
        mask = pa.array(keep)
        segments = self.segments.filter(mask)
        profiles, hierarchy = with_sizes(self.profiles, self.hierarchy, segments)
        return Customers(
            ids=self.ids.filter(mask),
            row={},
            embeddings=np.ascontiguousarray(self.embeddings[keep]),
            segments=segments,
            forecast=None if self.forecast is None else self.forecast.filter(mask),
            store=self.store.take(np.flatnonzero(keep)),
            index=index_without(self.index, rows),
            profiles=profiles,
            hierarchy=hierarchy,
            recommendations=None if self.recommendations is None else self.recommendations.filter(
                pc.invert(pc.is_in(self.recommendations["customer_id"], value_set=self.ids.take(pa.array(rows))))),
        ).indexed()

    def indexed(self) -> Customers:
        """Self with ``row`` built from ``ids`` (BundleError on a repeated customer id)."""
        ids = self.ids.to_pylist()
        row = dict(zip(ids, range(len(ids)), strict=True))
        if len(row) != len(ids):
            raise BundleError(f"segments: {len(ids) - len(row)} customer ids appear more than once")
        return dataclasses.replace(self, row=row)


def index_without(index: faiss.Index, rows: np.ndarray) -> faiss.Index:
    """A copy of the index without ids ``rows`` (sorted int64), the other ids shifted down to stay 0..n-1."""
    if index_kind(index) == "hnsw":
        fresh = rebuild_without(index, rows)
    else:
        fresh = faiss.clone_index(index)
        remove_ids(fresh, rows)
    if isinstance(fresh, faiss.IndexIDMap):
        ids = faiss.vector_to_array(fresh.id_map)
        faiss.copy_array_to_vector(ids - np.searchsorted(rows, ids), fresh.id_map)
        if isinstance(fresh, faiss.IndexIDMap2):
            fresh.construct_rev_map()
        return fresh
    ivf = faiss.extract_index_ivf(fresh)
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    for list_no in range(ivf.nlist):  # a loop over inverted lists, each shifted as one array in place
        size = lists.list_size(list_no)
        if size:
            ids = faiss.rev_swig_ptr(lists.get_ids(list_no), size)
            ids -= np.searchsorted(rows, ids)
    if ivf.direct_map.type != faiss.DirectMap.NoMap:
        ivf.make_direct_map(True)
    return fresh


def with_sizes(profiles: pa.Table, hierarchy: Hierarchy, segments: pa.Table) -> tuple[pa.Table, Hierarchy]:
    """Profiles' ``size``/``share`` and the hierarchy's sizes recomputed from the segment labels."""
    labels = segments["segment"].to_numpy()
    sizes = np.bincount(labels, minlength=hierarchy.k).astype(np.int64)
    hierarchy = dataclasses.replace(hierarchy, sizes=sizes)
    if "size" in profiles.column_names and "segment" in profiles.column_names:
        per_profile = sizes[profiles["segment"].to_numpy()]
        profiles = profiles.set_column(profiles.schema.get_field_index("size"), "size", pa.array(per_profile))
        if "share" in profiles.column_names:
            share = pa.array(per_profile / max(len(labels), 1))
            profiles = profiles.set_column(profiles.schema.get_field_index("share"), "share", share)
    return profiles, hierarchy


def sizes_differ(profiles: pa.Table, hierarchy: Hierarchy, segments: pa.Table) -> bool:
    if "size" not in profiles.column_names or "segment" not in profiles.column_names:
        return False
    labels = segments["segment"].to_numpy()
    sizes = np.bincount(labels, minlength=hierarchy.k)
    return not np.array_equal(sizes[profiles["segment"].to_numpy()], profiles["size"].to_numpy())


# -- files ----------------------------------------------------------------------------------------------
def replace_file(path: Path, write) -> None:
    """write(tmp) then fsync and rename over ``path``: readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
    except (OSError, RuntimeError) as err:  # FAISS reports a full disk as a RuntimeError
        tmp.unlink(missing_ok=True)  # give back what the partial file took
        if isinstance(err, OSError):
            raise
        full = "No space left" in str(err)
        raise OSError(errno.ENOSPC if full else errno.EIO, f"could not write {path.name}: {err}") from err
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_files(directory: Path, customers: Customers, names: set[str]) -> Customers:
    """Rewrite the named files from ``customers`` (index first, see the module docstring); the store is
    re-opened memory-mapped so its rewritten arrays leave memory. Returns the customers as now on disk."""
    c = customers
    if not names:
        return c
    if INDEX in names:
        replace_file(directory / INDEX, lambda tmp: faiss.write_index(c.index, str(tmp)))
    if EMBEDDINGS in names:
        replace_file(
            directory / EMBEDDINGS, lambda tmp: pq.write_table(embeddings_table(c.ids, c.embeddings), tmp)
        )
    if SEGMENTS in names:
        replace_file(directory / SEGMENTS, lambda tmp: pq.write_table(c.segments, tmp))
    if FORECAST in names and c.forecast is not None:
        replace_file(directory / FORECAST, lambda tmp: pq.write_table(c.forecast, tmp))
    if RECOMMENDATIONS in names and c.recommendations is not None:
        replace_file(directory / RECOMMENDATIONS, lambda tmp: pq.write_table(c.recommendations, tmp))
    if STORE in names:
        c.store.save(directory / STORE)
        c = dataclasses.replace(c, store=SequenceStore.open(directory / STORE))
    if PROFILES in names:
        replace_file(directory / PROFILES, lambda tmp: pq.write_table(c.profiles, tmp))
        replace_file(directory / HIERARCHY, lambda tmp: tmp.write_text(json.dumps(c.hierarchy.to_dict())))
    fsync_dir(directory)
    return c


def load_customers(
    directory: Path, profiles: pa.Table, hierarchy: Hierarchy, erased: list[str]
) -> tuple[Customers, set[str]]:
    """Read the customer files, drop erased ids still present (rewriting those files) and check that the
    files agree. Returns (customers, names of the files rewritten)."""
    ids, embeddings = read_file(directory, EMBEDDINGS, read_embeddings)
    segments = read_file(directory, SEGMENTS, pq.read_table)
    forecast = read_file(directory, FORECAST, pq.read_table) if (directory / FORECAST).exists() else None
    store = read_file(directory, STORE, SequenceStore.open)
    index = read_file(directory, INDEX, load_index)
    recommendations = (read_file(directory, RECOMMENDATIONS, pq.read_table)
                       if (directory / RECOMMENDATIONS).exists() else None)
    gone = pa.array(erased, pa.string())

    def present(column) -> np.ndarray:
        return pc.is_in(column, value_set=gone).to_numpy(zero_copy_only=False).astype(bool)

    rewrite: set[str] = set()
    dropped = np.flatnonzero(present(ids))
    if len(dropped) and index.ntotal == len(ids):
        index, rewrite = index_without(index, dropped), rewrite | {INDEX}
    elif index.ntotal != len(ids) - len(dropped):
        raise BundleError(
            f"{directory}: {INDEX} holds {index.ntotal} vectors for {len(ids) - len(dropped)} "
            f"customers in {EMBEDDINGS}; rebuild the bundle (train.py stage=segment)"
        )
    if len(dropped):
        keep = np.ones(len(ids), dtype=bool)
        keep[dropped] = False
        ids, embeddings, rewrite = ids.filter(pa.array(keep)), embeddings[keep], rewrite | {EMBEDDINGS}
    if (drop := present(segments["customer_id"])).any():
        segments, rewrite = segments.filter(pa.array(~drop)), rewrite | {SEGMENTS}
    if forecast is not None and (drop := present(forecast["customer_id"])).any():
        forecast, rewrite = forecast.filter(pa.array(~drop)), rewrite | {FORECAST}
    if (drop := present(store.customer_ids)).any():
        store, rewrite = store.take(np.flatnonzero(~drop)), rewrite | {STORE}
    if recommendations is not None and (drop := present(recommendations["customer_id"])).any():
        recommendations, rewrite = recommendations.filter(pa.array(~drop)), rewrite | {RECOMMENDATIONS}
    if rewrite or sizes_differ(profiles, hierarchy, segments):
        rewrite.add(PROFILES)
    profiles, hierarchy = with_sizes(profiles, hierarchy, segments)
    customers = Customers(
        ids, {}, np.ascontiguousarray(embeddings), segments, forecast, store, index, profiles, hierarchy,
        recommendations,
    )
    check(directory, customers)
    try:
        return write_files(directory, customers.indexed(), rewrite), rewrite
    except OSError as err:  # disk full: serve without the erased, and finish the rewrite on a later load
        log.error("%s: could not rewrite %s without erased customers (%s): they are left out of every answer, "
                  "and the rewrite is retried on the next load", directory, ", ".join(sorted(rewrite)), err)
        return customers.indexed(), set()


def check(directory: Path, c: Customers) -> None:
    """BundleError unless every customer file lists the same customers in the same order."""
    for name, other in (
        (SEGMENTS, c.segments["customer_id"]),
        (f"{STORE}/customers.arrow", c.store.customer_ids),
        (FORECAST, None if c.forecast is None else c.forecast["customer_id"]),
    ):
        if other is None:
            continue
        other = other.combine_chunks() if isinstance(other, pa.ChunkedArray) else other
        if not other.cast(pa.string()).equals(c.ids.cast(pa.string())):
            raise BundleError(
                f"{directory}: {name} does not list the same customers in the same order as "
                f"{EMBEDDINGS} ({len(other)} vs {c.n} rows)"
            )
    if c.index.ntotal != c.n or c.index.d != c.embeddings.shape[1]:
        raise BundleError(
            f"{directory}: {INDEX} holds {c.index.ntotal} vectors of dim {c.index.d} for "
            f"{c.n} embeddings of dim {c.embeddings.shape[1]}"
        )
