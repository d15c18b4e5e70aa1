"""Inner-product (cosine) FAISS index over customer embeddings, keyed by int64 bundle row numbers.

Kinds: "flat" (exact, IndexIDMap2 over IndexFlatIP), "ivf" (IndexIVFFlat, inner product, ids stored in
the inverted lists), "hnsw" (IndexIDMap2 over IndexHNSWFlat, inner product).

Erasure: flat and ivf remove ids in place. HNSW graphs cannot drop nodes, so `remove_ids` returns -1
for them and removes nothing; the caller then calls `rebuild_without(index, ids)`, which rebuilds the
graph from the vectors the index itself stores (no embeddings needed).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

KINDS = ("flat", "ivf", "hnsw")
HNSW_EF_SEARCH = 64


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [n, dim], got shape {x.shape}")
    return x


def _as_ids(ids: np.ndarray, n: int | None = None) -> np.ndarray:
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    if n is not None and len(ids) != n:
        raise ValueError(f"index: {len(ids)} ids for {n} embeddings")
    return ids


def default_nlist(n: int) -> int:
    """About 4 sqrt(n) IVF lists, but at most n / 39 so every list gets enough training points."""
    return max(1, min(int(round(4 * math.sqrt(n))), n // 39))


def build_index(
    embeddings: np.ndarray,
    ids: np.ndarray,
    kind: str = "flat",
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
) -> faiss.Index:
    """Build and fill an inner-product index.

    embeddings: float32 [n, d], L2-normalised; ids: int64 [n] bundle row numbers.
    kind: "flat" | "ivf" (nlist default `default_nlist(n)`, trained on the embeddings) | "hnsw".
    """
    if kind not in KINDS:
        raise ValueError(f"index kind {kind!r} is unknown; expected one of {', '.join(KINDS)}")
    x = _as_matrix(embeddings, "embeddings")
    n, d = x.shape
    ids = _as_ids(ids, n)
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    elif kind == "ivf":
        nlist = default_nlist(n) if nlist is None else nlist
        if not 1 <= nlist <= n:
            raise ValueError(f"ivf index: nlist={nlist} must be between 1 and the number of embeddings ({n})")
        index = faiss.index_factory(d, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.nprobe = min(nprobe, nlist)
    else:
        hnsw = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
        index = faiss.IndexIDMap2(hnsw)
    index.add_with_ids(x, ids)
    log.info("index %s: %d vectors of dim %d", kind, index.ntotal, d)
    return index


def index_kind(index: faiss.Index) -> str:
    """ "flat", "ivf" or "hnsw" for an index made by `build_index` (or loaded from one)."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexIVF):
        return "ivf"
    if isinstance(inner, faiss.IndexFlat):
        return "flat"
    raise ValueError(f"index of type {type(inner).__name__} was not made by build_index")


def save_index(index: faiss.Index, path: str | os.PathLike) -> None:
    """Write the index to `path` atomically (path + ".tmp", then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)


def load_index(path: str | os.PathLike) -> faiss.Index:
    """Read an index written by `save_index`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"index file {path} does not exist")
    return faiss.read_index(str(path))


def remove_ids(index: faiss.Index, ids: np.ndarray) -> int:
    """Remove ids (erasure) in place; returns how many vectors were removed.

    Returns -1, removing nothing, for an HNSW index: use `rebuild_without` for those.
    """
    if index_kind(index) == "hnsw":
        log.warning("remove_ids: HNSW cannot remove in place; call rebuild_without")
        return -1
    ids = _as_ids(ids)
    if len(ids) == 0:
        return 0
    return int(index.remove_ids(ids))


def stored_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings float32 [ntotal, d], ids int64 [ntotal]) held by a flat or hnsw index."""
    if not isinstance(index, faiss.IndexIDMap):
        raise ValueError("stored_vectors: only flat and hnsw indexes (IndexIDMap2) keep retrievable vectors")
    inner = faiss.downcast_index(index.index)
    return inner.reconstruct_n(0, inner.ntotal), faiss.vector_to_array(index.id_map).astype(np.int64)


def rebuild_without(index: faiss.Index, ids: np.ndarray) -> faiss.Index:
    """A new index of the same kind holding everything but `ids` (for HNSW erasure).

    flat / hnsw: rebuilt from the stored vectors (hnsw keeps its M and efSearch); ivf: a copy with
    the ids removed (the trained quantizer is kept).
    """
    ids = _as_ids(ids)
    if index_kind(index) == "ivf":
        copy = faiss.clone_index(index)
        copy.remove_ids(ids)
        return copy
    vectors, stored_ids = stored_vectors(index)
    keep = ~np.isin(stored_ids, ids)
    d = vectors.shape[1]
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexHNSW):
        fresh = faiss.IndexHNSWFlat(d, inner.hnsw.nb_neighbors(1), faiss.METRIC_INNER_PRODUCT)
        fresh.hnsw.efSearch = inner.hnsw.efSearch
    else:
        fresh = faiss.IndexFlatIP(d)
    rebuilt = faiss.IndexIDMap2(fresh)
    rebuilt.add_with_ids(np.ascontiguousarray(vectors[keep]), stored_ids[keep])
    log.info("rebuild_without: %d -> %d vectors", len(stored_ids), rebuilt.ntotal)
    return rebuilt


def search(index: faiss.Index, queries: np.ndarray, k: int,
           params: faiss.SearchParameters | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by inner product. queries: float32 [q, d] -> (scores float32 [q, k], ids int64 [q, k]);
    slots past the available results hold id -1 (FAISS's convention). params: per-call search settings
    (e.g. an IVF index's nprobe), leaving the index's own untouched."""
    if k < 1:
        raise ValueError(f"search: k={k} must be at least 1")
    q = _as_matrix(queries, "queries")
    if q.shape[1] != index.d:
        raise ValueError(f"search: queries have dim {q.shape[1]} but the index has dim {index.d}")
    scores, ids = index.search(q, k, params=params) if params is not None else index.search(q, k)
    return scores.astype(np.float32), ids.astype(np.int64)
