"""Lookalike audiences: customers most similar to a seed set, their size, and how well they rank."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import faiss
import numpy as np
from scipy.stats import rankdata

from engine.index.index import index_kind, search

log = logging.getLogger(__name__)

Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (queries, k) -> (scores, ids)

METHODS = ("centroid", "knn_vote", "nearest_seeds")
NEAREST = 3  # nearest_seeds: a candidate scores the mean similarity to its 3 most similar seeds
KNN_VOTE_MIN_PER_SEED = 64


def audience_size(size: int | None, fraction: float | None, n_total: int) -> int:
    """Number of customers an audience request asks for: `size` exactly, or round(fraction * n_total)
    (at least 1). Exactly one of size / fraction must be given."""
    if (size is None) == (fraction is None):
        raise ValueError("audience: give exactly one of size or fraction")
    if size is not None:
        if size <= 0:
            raise ValueError(f"audience: size must be a positive number of customers, got {size}")
        if size > n_total:
            raise ValueError(f"audience: size {size} exceeds the {n_total} customers available")
        return int(size)
    if not 0 < fraction <= 1:
        raise ValueError(f"audience: fraction must be in (0, 1], got {fraction}")
    return max(1, int(round(fraction * n_total)))


def _rows(rows: np.ndarray | None, n: int, name: str) -> np.ndarray:
    rows = np.unique(np.asarray([] if rows is None else rows, dtype=np.int64))
    if len(rows) and (rows[0] < 0 or rows[-1] >= n):
        raise ValueError(f"lookalike: {name} rows must lie in 0..{n - 1}, got {rows[0]}..{rows[-1]}")
    return rows


def _centroid(search: Search, seeds: np.ndarray, banned: np.ndarray, k: int):
    """Search once (top k) with the normalised seed mean; (rows, scores) minus the banned rows."""
    query = seeds.mean(axis=0, keepdims=True)
    query /= max(float(np.linalg.norm(query)), 1e-12)
    scores, ids = search(query, k)
    keep = (ids[0] >= 0) & ~np.isin(ids[0], banned)
    return ids[0][keep], scores[0][keep]


def _knn_vote(search: Search, seeds: np.ndarray, banned: np.ndarray, k: int):
    """Each seed retrieves k neighbours; a candidate scores sum(similarity) / n_seeds over the seeds
    that retrieved it (0 from the others). Ranked by score, ties by row."""
    scores, ids = search(seeds, k)
    scores, ids = scores.ravel(), ids.ravel()
    keep = (ids >= 0) & ~np.isin(ids, banned)
    candidates, inverse = np.unique(ids[keep], return_inverse=True)
    votes = np.bincount(inverse, weights=scores[keep], minlength=len(candidates)) / len(seeds)
    order = np.lexsort((candidates, -votes))
    return candidates[order], votes[order].astype(np.float32)


def _nearest_seeds(search: Search, seeds: np.ndarray, banned: np.ndarray, k: int):
    """Each seed retrieves k neighbours; a candidate scores the mean of its NEAREST highest similarities to
    the seeds that retrieved it (missing ones count 0). Ranked by score, ties by row."""
    scores, ids = search(seeds, k)
    scores, ids = scores.ravel(), ids.ravel()
    keep = (ids >= 0) & ~np.isin(ids, banned)
    ids, scores = ids[keep], scores[keep]
    order = np.lexsort((-scores, ids))
    ids, scores = ids[order], scores[order]
    start = np.ones(len(ids), dtype=bool)
    start[1:] = ids[1:] != ids[:-1]
    group = np.cumsum(start) - 1
    rank = np.arange(len(ids)) - np.flatnonzero(start)[group]
    top = rank < NEAREST
    candidates = ids[start]
    totals = np.bincount(group[top], weights=scores[top], minlength=len(candidates)) / NEAREST
    order = np.lexsort((candidates, -totals))
    return candidates[order], totals[order].astype(np.float32)


def nearest_seed_scores(embeddings: np.ndarray, seed_rows: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Exact nearest_seeds scores of every row: float32 [n], the mean of its NEAREST highest cosine
    similarities to the seeds (a seed's own similarity to itself included; callers drop seeds)."""
    seeds = np.asarray(embeddings[np.asarray(seed_rows)], dtype=np.float32)
    m = min(NEAREST, len(seeds))
    out = np.empty(len(embeddings), dtype=np.float32)
    for start in range(0, len(embeddings), chunk):  # chunks of customers bound the memory
        sims = np.asarray(embeddings[start:start + chunk], dtype=np.float32) @ seeds.T
        out[start:start + chunk] = np.partition(sims, sims.shape[1] - m, axis=1)[:, -m:].sum(1) / NEAREST
    return out


def best_rows(scores: np.ndarray, banned: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``size`` best-scored rows of a score per row, never a banned one: (rows int64, scores float32), best
    first, ties by row. ``scores`` is modified (banned rows set to -inf)."""
    scores[banned] = -np.inf
    size = min(size, len(scores) - len(banned))
    top = np.argpartition(-scores, size - 1)[:size] if size > 0 else np.zeros(0, dtype=np.int64)
    order = np.lexsort((top, -scores[top]))
    return top[order].astype(np.int64), scores[top[order]].astype(np.float32)


def _exact_nearest_seeds(embeddings: np.ndarray, seeds: np.ndarray, banned: np.ndarray, size: int):
    """nearest_seeds by brute force over every row: exact, as a flat index is (O(n x seeds x dim))."""
    return best_rows(nearest_seed_scores(embeddings, seeds), banned, size)


def lookalike(
    index: faiss.Index,
    embeddings: np.ndarray,
    seed_rows: np.ndarray,
    size: int,
    exclude_rows: np.ndarray | None = None,
    method: str = "centroid",
) -> tuple[np.ndarray, np.ndarray]:
    """The `size` customers most like the seeds, never a seed or an excluded row.

    index: built over `embeddings` with row numbers as ids; embeddings: float32 [n, d], L2-normalised;
    seed_rows, exclude_rows: int64 row numbers. method "centroid": one query, the normalised mean seed
    (k = size + seeds + excluded, doubled until enough survive the filter or the index is exhausted);
    "knn_vote": every seed queries max(64, 2 (size + banned) / n_seeds) neighbours, doubled likewise,
    and candidates are scored by summed similarity / n_seeds (good for multi-modal seed sets);
    "nearest_seeds": the same searches, a candidate scores its mean similarity to its 3 nearest seeds (the
    best audiences in engine.index.evaluation: seeds are rarely one cluster).
    Returns (rows int64 [<= size], scores float32 [<= size]), best first.
    """
    if method not in METHODS:
        raise ValueError(f"lookalike: method {method!r} is unknown; expected one of {', '.join(METHODS)}")
    if size <= 0:
        raise ValueError(f"lookalike: size must be positive, got {size}")
    n = len(embeddings)
    seeds = _rows(seed_rows, n, "seed")
    if len(seeds) == 0:
        raise ValueError("lookalike: at least one seed row is needed")
    banned = np.union1d(seeds, _rows(exclude_rows, n, "exclude"))
    seed_vectors = np.asarray(embeddings[seeds], dtype=np.float32)
    ntotal = int(index.ntotal)
    if method == "nearest_seeds" and index_kind(index) == "flat":
        return _exact_nearest_seeds(embeddings, seeds, banned, size)
    if method == "centroid":
        k, run = size + len(banned), _centroid
    else:
        run = _knn_vote if method == "knn_vote" else _nearest_seeds
        k = max(KNN_VOTE_MIN_PER_SEED, math.ceil(2 * (size + len(banned)) / len(seeds)))
    k = max(1, min(k, ntotal))
    # An IVF index returns only what its probed lists hold: when a search comes back short of k, a larger k
    # finds nothing more (and sorts a heap of k), so the search probes twice as many lists instead. The
    # index's own nprobe is left as it is (concurrent requests share it).
    ivf = faiss.extract_index_ivf(index) if isinstance(index, faiss.Index) and index_kind(index) == "ivf" else None
    nprobe, short = (int(ivf.nprobe) if ivf is not None else 0), [False]

    def query(vectors: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersIVF(nprobe=nprobe) if ivf is not None else None
        scores, ids = search(index, vectors, top, params)
        short[0] = bool((ids < 0).any())
        return scores, ids

    while True:
        rows, scores = run(query, seed_vectors, banned, k)
        if len(rows) >= size:
            break
        if short[0] and ivf is not None and nprobe < ivf.nlist:
            nprobe = min(2 * nprobe, int(ivf.nlist))
            log.debug("lookalike: %d of %d from the probed lists; nprobe -> %d", len(rows), size, nprobe)
        elif k < ntotal:
            k = min(2 * k, ntotal)
            log.debug("lookalike: %d of %d after filtering; k -> %d", len(rows), size, k)
        else:
            break
    return rows[:size].astype(np.int64), scores[:size].astype(np.float32)


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Rank-based ROC-AUC (Mann-Whitney U; tied scores count one half). NaN without both classes."""
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Mean precision at each positive in descending score order. Tied scores form one threshold:
    every positive in a tie gets the precision at the end of the tie. NaN without positives."""
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], positives[order]
    true_pos = np.cumsum(hits)
    tie_end = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), len(scores) - 1]  # last index of each score
    precision = true_pos[tie_end] / (tie_end + 1)
    new_pos = np.diff(np.r_[0, true_pos[tie_end]])
    return float((new_pos * precision).sum() / n_pos)


def evaluate_lookalike(
    scores_by_method: dict[str, np.ndarray], positives: np.ndarray
) -> dict[str, dict[str, float]]:
    """ROC-AUC and average precision of each method's scores against the true audience.

    scores_by_method: method -> float [n] (higher = more alike; use -inf for never retrieved);
    positives: bool [n]. Returns {method: {"roc_auc": .., "average_precision": ..}}.
    """
    positives = np.asarray(positives, dtype=bool)
    result = {}
    for method, scores in scores_by_method.items():
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != positives.shape:
            raise ValueError(
                f"evaluate_lookalike: {method} has {scores.shape} scores for {positives.shape} positives"
            )
        if np.isnan(scores).any():
            raise ValueError(f"evaluate_lookalike: {method} scores contain NaN")
        result[method] = {
            "roc_auc": roc_auc(scores, positives),
            "average_precision": average_precision(scores, positives),
        }
    return result
