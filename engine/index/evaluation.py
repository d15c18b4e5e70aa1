"""Lookalike quality, measured: for items bought after a cutoff, half of each item's later buyers are seeds
and the lookalike scores must find the other half among everyone else.

References computed on the same tasks: cosine to the seeds' centroid over TF-IDF bag-of-items histories
(the baseline) and the number of times a customer bought the item before (a ceiling: it is told the item).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from engine.data.store import SequenceStore
from engine.index.lookalike import average_precision, nearest_seed_scores, roc_auc

log = logging.getLogger(__name__)


def tfidf_histories(store: SequenceStore) -> sp.csr_matrix:
    """float32 [n_customers, n_items] L2-normalised TF-IDF of the items in each customer's history."""
    items = np.asarray(store.columns["item_id"]).astype(np.int64)
    rows = store.customer_rows()
    known = items > 0
    n_items = len(store.vocabs["item_id"])
    counts = sp.csr_matrix((np.ones(known.sum(), np.float32), (rows[known], items[known])),
                           shape=(store.n_customers, n_items))
    counts.sum_duplicates()
    df = np.bincount(counts.indices, minlength=n_items)
    idf = np.log((1 + store.n_customers) / (1 + df)).astype(np.float32) + 1.0
    tfidf = counts.multiply(idf[None, :]).tocsr()
    tfidf.data = np.log1p(tfidf.data)
    norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-12)).dot(tfidf).tocsr()


def purchase_counts(store: SequenceStore) -> sp.csr_matrix:
    """[n_customers, n_items] number of purchases of each item by each customer."""
    items = np.asarray(store.columns["item_id"]).astype(np.int64)
    keep = store.is_purchase() & (items > 0)
    m = sp.csr_matrix((np.ones(keep.sum(), np.float32), (store.customer_rows()[keep], items[keep])),
                      shape=(store.n_customers, len(store.vocabs["item_id"])))
    m.sum_duplicates()
    return m


def lookalike_tasks(history: SequenceStore, future: SequenceStore, n_items: int, min_buyers: int,
                    seed: int = 0) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(item id, seed rows, target rows) for the items with the most buyers after the cutoff.

    history and future are aligned by customer row (future = the same customers' later events)."""
    buyers = purchase_counts(future).tocsc()
    n_buyers = np.diff(buyers.indptr)
    n_buyers[0] = 0  # the unknown item
    candidates = np.flatnonzero(n_buyers >= min_buyers)
    chosen = candidates[np.argsort(-n_buyers[candidates], kind="stable")][:n_items]
    rng = np.random.default_rng(seed)
    tasks = []
    for item in chosen:  # a loop over evaluation items, not customers
        rows = rng.permutation(buyers.indices[buyers.indptr[item]:buyers.indptr[item + 1]])
        half = len(rows) // 2
        tasks.append((int(item), np.sort(rows[:half]), np.sort(rows[half:])))
    return tasks


def evaluate(history: SequenceStore, future: SequenceStore, embeddings: np.ndarray, n_items: int = 30,
             min_buyers: int = 10, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean ROC-AUC and average precision over the tasks, per method: the engine's embeddings (centroid of
    the seeds), TF-IDF (baseline) and past purchases of the item (ceiling). embeddings: [n, d] aligned with
    history's rows."""
    tasks = lookalike_tasks(history, future, n_items, min_buyers, seed)
    if not tasks:
        raise ValueError(f"no item was bought by at least {min_buyers} customers after the cutoff: "
                         "lower evaluate.min_buyers or move data.cutoff earlier")
    tfidf = tfidf_histories(history)
    past = purchase_counts(history).tocsc()
    results: dict[str, list[tuple[float, float]]] = {"engine": [], "engine_centroid": [], "tfidf": [], "ceiling": []}
    for item, seeds, targets in tasks:
        candidate = np.ones(history.n_customers, dtype=bool)
        candidate[seeds] = False
        positive = np.zeros(history.n_customers, dtype=bool)
        positive[targets] = True
        query = embeddings[seeds].mean(0)
        tf_query = np.asarray(tfidf[seeds].mean(axis=0)).ravel()
        scores = {
            "engine": nearest_seed_scores(embeddings, seeds),
            "engine_centroid": embeddings @ (query / max(np.linalg.norm(query), 1e-12)),
            "tfidf": tfidf @ (tf_query / max(np.linalg.norm(tf_query), 1e-12)),
            "ceiling": past[:, item].toarray().ravel(),
        }
        for method, score in scores.items():
            s, p = score[candidate], positive[candidate]
            results[method].append((roc_auc(s, p), average_precision(s, p)))
    summary = {m: {"roc_auc": float(np.mean([r[0] for r in v])), "average_precision": float(np.mean([r[1] for r in v])),
                   "tasks": len(v)} for m, v in results.items()}
    log.info("lookalike evaluation over %d items: %s", len(tasks), summary)
    return summary


def markdown(summary: dict[str, dict[str, float]]) -> str:
    lines = ["| method | ROC-AUC | average precision |", "| --- | --- | --- |"]
    names = {"engine": "segment-engine embeddings (nearest seeds, the default)",
             "engine_centroid": "segment-engine embeddings (seed centroid)", "tfidf": "TF-IDF bag of items (baseline)",
             "ceiling": "past purchases of the item (ceiling)"}
    for method, r in summary.items():
        lines.append(f"| {names.get(method, method)} | {r['roc_auc']:.3f} | {r['average_precision']:.3f} |")
    return "\n".join(lines)
