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
             new: tuple[Candidates, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """{method: {metric: value}} for the engine's scores of candidates ``c`` and every baseline on the same
    candidates. ``new``: the engine's candidates and scores for new-item lists (the discovery ranker's,
    over candidates with the model's), also where the model-only row is scored; default ``c`` and its scores."""
    c_new, new_score = new if new is not None else (c, engine_score)
    model_only = baseline_scores(c_new)["model_only"]
    lists = {"engine": (c, engine_score, c_new, new_score)}
    lists.update({k: (c, v, c, v) for k, v in baseline_scores(c).items() if k != "model_only"})
    lists["model_only"] = (c_new, model_only, c_new, model_only)
    past = sp.csr_matrix((np.ones(len(history.row), bool), (history.row, history.item)), shape=truth_m.shape)
    new_truth = (truth_m > past).astype(bool).tocsr()  # bought after, never before
    out = {}
    for name, (ca, sa, cb, sb) in lists.items():
        items, _ = top_n(ca.row, ca.item, sa, n_rows, N)
        result = scores(items, truth_m)
        unbought = cb.features[:, _F["bought"]] == 0
        new_items, _ = top_n(cb.row[unbought], cb.item[unbought], sb[unbought], n_rows, N)
        fresh = scores(new_items, new_truth)
        result["new_recall@20"], result["new_customers"] = fresh["recall@20"], fresh["customers"]
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
    ``horizon_days`` after (``future``: the same customers' later events), beside the baselines. Each list
    is what the service answers: the main lists from the history alone, the new-item lists (new_only) with
    the model's candidates and scores."""
    history = Purchases.of(store, as_of)
    everything = Filters(exclude_returned=False)
    c = candidates(history, recommender.stats, as_of, None, everything)
    truth_m = truth(Purchases.of(future), as_of, horizon_days, recommender.stats.n_items)
    new = None
    if recommender.model_scores(sequence) is not None:
        c_model = candidates(history, recommender.stats, as_of, recommender.model_scores(sequence), everything)
        new = (c_model, recommender.discovery_scores(c_model.features))
    results = evaluate(c, history.n, recommender.main_scores(c.features), history, truth_m, new)
    return {"horizon_days": horizon_days, "methods": results}
