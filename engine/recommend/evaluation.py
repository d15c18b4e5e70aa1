"""Recommendation quality after a cutoff, beside the classical answers computed on the same candidates.

Truth: the distinct known items each customer buys in [cutoff, cutoff + h). Over the customers with at least
one (the others have nothing to recall): Recall@10 and @20 (share of those items in the top 10 / 20), NDCG@20
(binary gains, ideal list of min(20, bought) hits) and HitRate@10 (at least one bought item in the top 10).
New-item Recall@20: each method's list without the items the customer bought before, against the items
bought after the cutoff that they never bought before, over the customers with at least one.

Baselines: global popularity (distinct buyers), the customer's own repeat frequency (most bought first,
then most recent, popularity to fill) and item-to-item cosine co-occurrence kNN (the sum of the similarities
of an item to the customer's items, popularity to fill).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from engine.recommend.candidates import FEATURES, Candidates, Filters, candidates, top_n
from engine.recommend.items import DAY, Purchases

N = 20
METRICS = ("recall@10", "recall@20", "ndcg@20", "hit@10", "new_recall@20")
NAMES = {"engine": "engine (ranker over the model and history)", "popularity": "global popularity",
         "repeat": "own repeat frequency", "item_knn": "item-to-item kNN", "model_only": "model item head only"}
_F = {name: i for i, name in enumerate(FEATURES)}


def baseline_scores(c: Candidates) -> dict[str, np.ndarray]:
    """Each baseline's score of every candidate pair (higher first), from the pairs' features."""
    f = c.features
    pop = f[:, _F["popularity"]] * 1e-3
    return {
        "popularity": pop,
        "repeat": f[:, _F["bought"]] * 10 + f[:, _F["own_count"]] - 1e-3 * f[:, _F["days_since"]] + pop,
        "item_knn": f[:, _F["cooccurrence"]] + pop,
        "model_only": np.where(f[:, _F["in_model"]] > 0, f[:, _F["model_score"]], -1e3) + pop,
    }


def truth(future: Purchases, as_of: int, horizon_days: float, n_items: int) -> sp.csr_matrix:
    """bool [n, n_items]: the items each customer bought in [as_of, as_of + horizon)."""
    f = future
    keep = (f.ts >= as_of) & (f.ts < as_of + horizon_days * DAY)
    m = sp.csr_matrix((np.ones(int(keep.sum()), bool), (f.row[keep], f.item[keep])), shape=(f.n, n_items))
    m.sum_duplicates()
    return m


def scores(items: np.ndarray, truth: sp.csr_matrix) -> dict[str, float]:
    """Recall@10/@20, NDCG@20 and HitRate@10 of the lists ``items`` [n, >=20] (0: padding) over the rows
    with at least one true item; "customers": how many."""
    counts = np.diff(truth.indptr)
    rows = np.flatnonzero(counts > 0)
    if len(rows) == 0:
        return {"recall@10": float("nan"), "recall@20": float("nan"), "ndcg@20": float("nan"),
                "hit@10": float("nan"), "customers": 0}
    lists = items[rows, :N]
    sub = truth[rows]
    hit = np.zeros(lists.shape, bool)
    for j in range(N):  # a column at a time: hit[r, j] = lists[r, j] in the row's truth
        hit[:, j] = np.asarray(sub[np.arange(len(rows)), lists[:, j]]).ravel() & (lists[:, j] > 0)
    n_true = counts[rows].astype(float)
    discount = 1.0 / np.log2(np.arange(2, N + 2))
    ideal = np.cumsum(discount)[np.minimum(n_true, N).astype(int) - 1]
    return {"recall@10": float((hit[:, :10].sum(1) / n_true).mean()),
            "recall@20": float((hit.sum(1) / n_true).mean()),
            "ndcg@20": float(((hit * discount).sum(1) / ideal).mean()),
            "hit@10": float(hit[:, :10].any(1).mean()), "customers": int(len(rows))}


def evaluate(c: Candidates, n_rows: int, engine_score: np.ndarray, history: Purchases, truth_m: sp.csr_matrix,
             engine_new_score: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """{method: {metric: value}} for the engine's scores (``engine_new_score``: its scores for new-item
    lists, the discovery ranker's) and every baseline on the same candidates."""
    bought = c.features[:, _F["bought"]] > 0
    methods = {"engine": engine_score, **baseline_scores(c)}
    new_scores = {"engine": engine_new_score if engine_new_score is not None else engine_score}
    past = sp.csr_matrix((np.ones(len(history.row), bool), (history.row, history.item)), shape=truth_m.shape)
    new_truth = (truth_m > past).astype(bool).tocsr()  # bought after, never before
    out = {}
    for name, s in methods.items():
        items, _ = top_n(c.row, c.item, s, n_rows, N)
        result = scores(items, truth_m)
        s_new = new_scores.get(name, s)
        new_items, _ = top_n(c.row[~bought], c.item[~bought], s_new[~bought], n_rows, N)
        new = scores(new_items, new_truth)
        result["new_recall@20"] = new["recall@20"]
        result["new_customers"] = new["customers"]
        out[name] = result
    return out


def markdown(results: dict[str, dict[str, float]]) -> str:
    """The methods' figures as a markdown table."""
    head = "| method | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS)
    lines = [head] + [f"| {NAMES.get(k, k)} | " + " | ".join(f"{v[m]:.4f}" for m in METRICS) + " |"
                      for k, v in results.items()]
    return "\n".join(lines)


def evaluate_recommender(recommender, store, future, as_of: int, sequence: np.ndarray | None,
                         horizon_days: float) -> dict:
    """The recommender's lists for ``store``'s customers as of ``as_of`` against what they bought in the
    ``horizon_days`` after (``future``: the same customers' later events), beside the baselines."""
    history = Purchases.of(store, as_of)
    c = candidates(history, recommender.stats, as_of, recommender.model_scores(sequence),
                   Filters(exclude_returned=False))
    truth_m = truth(Purchases.of(future), as_of, horizon_days, recommender.stats.n_items)
    results = evaluate(c, history.n, recommender.ranker.score(c.features), history, truth_m,
                       recommender.discovery.score(c.features))
    return {"horizon_days": horizon_days, "methods": results}
