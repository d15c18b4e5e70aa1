"""Lookalike quality, measured: for product categories and products bought after a cutoff by 2-30% of the
customers, half of each one's later buyers are the seeds and the lookalike scores must find the other half
among all non-seeds.

Methods scored on the same tasks: the engine's default (the seed signature, engine.index.signature), the
engine's vector with its nearest-seeds search, and the baselines an analyst writes in an afternoon: cosine to
the seeds' centroid over TF-IDF bag-of-items histories, the same after a 64-dimensional truncated SVD, a
TF-IDF kNN vote, activity (number of purchases), and the count of times the customer bought the product or
category before (an oracle: it is told the product, which a seed list is not).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from engine.data.store import SequenceStore
from engine.data.summary import purchase_counts
from engine.index import signature
from engine.index.lookalike import average_precision, nearest_seed_scores, roc_auc
from engine.represent import tfidf_histories

log = logging.getLogger(__name__)

KNN_VOTE_NEIGHBOURS = 50
METHOD_NAMES = {
    "engine": "segment-engine (seed signature, the default)",
    "engine_nearest": "segment-engine vector (nearest seeds)",
    "engine_sequence": "sequence encoder alone (nearest seeds)",
    "tfidf": "TF-IDF bag of items, seed centroid",
    "tfidf_svd": "TF-IDF + truncated SVD(64), seed centroid",
    "tfidf_knn": "TF-IDF kNN vote",
    "activity": "activity (number of purchases)",
    "oracle": "past purchases of the product or category (oracle)",
}


def lookalike_tasks(history: SequenceStore, future: SequenceStore, per_kind: int = 25, min_share: float = 0.02,
                    max_share: float = 0.30, min_buyers: int = 10, seed: int = 0) -> list[dict]:
    """Up to ``per_kind`` categories and ``per_kind`` products, drawn at random among those bought after the
    cutoff by min_share..max_share of the customers (and by at least ``min_buyers``); for each, half its
    later buyers (at random) are the seeds, the rest the targets. history and future are aligned by row."""
    rng = np.random.default_rng(seed)
    tasks = []
    n = history.n_customers
    for kind, field in (("category", "category"), ("product", "item_id")):
        buyers = (purchase_counts(future, field) > 0).tocsc()
        count = np.diff(buyers.indptr)
        count[0] = 0  # the unknown token
        eligible = np.flatnonzero((count >= max(min_buyers, min_share * n)) & (count <= max_share * n))
        chosen = np.sort(rng.choice(eligible, min(per_kind, len(eligible)), replace=False))
        for token in chosen:  # a loop over evaluation tasks, not customers
            rows = rng.permutation(buyers.indices[buyers.indptr[token]:buyers.indptr[token + 1]])
            half = len(rows) // 2
            tasks.append({"kind": kind, "field": field, "token": int(token),
                          "name": history.vocabs[field][token], "seeds": np.sort(rows[:half]),
                          "targets": np.sort(rows[half:])})
    return tasks


def knn_vote_scores(matrix: sp.csr_matrix, seeds: np.ndarray, k: int = KNN_VOTE_NEIGHBOURS) -> np.ndarray:
    """Each seed votes for its k most similar customers with its similarity; float64 [n] summed votes."""
    sims = np.asarray((matrix @ matrix[seeds].T).todense(), dtype=np.float64)  # [n, seeds]
    k = min(k, sims.shape[0] - 1)
    cut = np.partition(sims, sims.shape[0] - k, axis=0)[sims.shape[0] - k]  # each seed's k-th best
    return np.where(sims >= cut[None, :], sims, 0.0).sum(axis=1)


def _centroid(matrix, seeds: np.ndarray) -> np.ndarray:
    q = np.asarray(matrix[seeds].mean(axis=0)).ravel()
    return np.asarray(matrix @ (q / max(np.linalg.norm(q), 1e-12))).ravel()


def precision_at(scores: np.ndarray, positives: np.ndarray, size: int) -> float:
    """Share of true audience members among the ``size`` best-scored (ties broken by row)."""
    top = np.argsort(-scores, kind="stable")[:size]
    return float(positives[top].mean()) if size > 0 else float("nan")


def evaluate(history: SequenceStore, future: SequenceStore, embeddings: np.ndarray, as_of: int,
             sequence: np.ndarray | None = None, per_kind: int = 25, min_buyers: int = 10,
             seed: int = 0, weights: signature.Weights = signature.UNTUNED) -> dict:
    """{"methods": {method: {kind: {"roc_auc", "average_precision", "precision_at_size", "tasks"}}},
    "tasks": [...]} with kinds "category", "product" and "all"; embeddings: the engine's vectors [n, d]
    aligned with history's rows, sequence: the encoder's own (optional; the default scorer reads it, as the
    service reads the encoder's part of a bundle's vectors); weights: the signature scorer's, as the bundle
    serves them (signature.tune on the history)."""
    from sklearn.utils.extmath import randomized_svd

    tasks = lookalike_tasks(history, future, per_kind, min_buyers=min_buyers, seed=seed)
    if not tasks:
        raise ValueError("lookalike evaluation: no category or product was bought after the cutoff by 2-30% "
                         f"of the {history.n_customers} customers (and at least {min_buyers}); move "
                         "data.cutoff earlier")
    tfidf = tfidf_histories(history)
    u, s, _ = randomized_svd(tfidf, min(64, min(tfidf.shape) - 1), random_state=seed)
    svd = u * s
    svd /= np.maximum(np.linalg.norm(svd, axis=1, keepdims=True), 1e-12)
    features = signature.SignatureFeatures.from_store(history, as_of, weights=weights)
    activity = np.bincount(history.customer_rows()[history.is_purchase()], minlength=history.n_customers)
    past = {f: purchase_counts(history, f).tocsc() for f in ("item_id", "category")}
    n = history.n_customers
    per_task: dict[str, list[dict]] = {m: [] for m in METHOD_NAMES}
    for task in tasks:  # a loop over evaluation tasks, not customers
        seeds, targets = task["seeds"], task["targets"]
        candidate = np.ones(n, dtype=bool)
        candidate[seeds] = False
        positive = np.zeros(n, dtype=bool)
        positive[targets] = True
        scores = {
            "engine": signature.scores(features, seeds, weights, seed=seed, vectors=sequence),
            "engine_nearest": nearest_seed_scores(embeddings, seeds),
            "tfidf": _centroid(tfidf, seeds),
            "tfidf_svd": _centroid(svd, seeds),
            "tfidf_knn": knn_vote_scores(tfidf, seeds),
            "activity": activity.astype(np.float64),
            "oracle": past[task["field"]][:, task["token"]].toarray().ravel(),
        }
        if sequence is not None:
            scores["engine_sequence"] = nearest_seed_scores(sequence, seeds)
        for method, score in scores.items():
            sc, p = np.asarray(score, np.float64)[candidate], positive[candidate]
            per_task[method].append({"kind": task["kind"], "roc_auc": roc_auc(sc, p),
                                     "average_precision": average_precision(sc, p),
                                     "precision_at_size": precision_at(sc, p, int(p.sum()))})
    methods = {}
    for method, rows in per_task.items():
        if not rows:
            continue
        methods[method] = {}
        for kind in ("category", "product", "all"):
            chosen = [r for r in rows if kind == "all" or r["kind"] == kind]
            if chosen:
                methods[method][kind] = {m: float(np.mean([r[m] for r in chosen]))
                                         for m in ("roc_auc", "average_precision", "precision_at_size")}
                methods[method][kind]["tasks"] = len(chosen)
    log.info("lookalike evaluation over %d tasks", len(tasks))
    return {"methods": methods, "tasks": [{"kind": t["kind"], "name": t["name"], "seeds": len(t["seeds"]),
                                           "targets": len(t["targets"])} for t in tasks]}


def markdown(summary: dict) -> str:
    lines = ["| method | tasks | ROC-AUC | average precision | precision at audience size |",
             "| --- | --- | --- | --- | --- |"]
    for method, kinds in summary["methods"].items():
        for kind, r in kinds.items():
            if kind == "all":
                continue
            lines.append(f"| {METHOD_NAMES.get(method, method)} | {kind} ({r['tasks']}) | {r['roc_auc']:.3f} | "
                         f"{r['average_precision']:.3f} | {r['precision_at_size']:.3f} |")
    return "\n".join(lines)
