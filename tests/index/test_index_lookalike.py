"""Lookalike audiences, audience sizing and the AUC / average-precision evaluation."""

import math

import numpy as np
import pytest

from engine.index.index import build_index
from engine.index.lookalike import audience_size, average_precision, evaluate_lookalike, lookalike, roc_auc

N_CLUSTERS, PER_CLUSTER, DIM = 10, 300, 16


def clusters(seed: int = 0):
    """10 well-separated blobs of 300 customers. -> (float32 [3000, 16], cluster int64 [3000])."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CLUSTERS, DIM))
    cluster = np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER)
    x = centres[cluster] / np.linalg.norm(centres[cluster], axis=1, keepdims=True) + 0.1 * rng.normal(
        size=(len(cluster), DIM)
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), cluster


@pytest.fixture(scope="module")
def base():
    x, cluster = clusters()
    return x, cluster, build_index(x, np.arange(len(x)))


@pytest.mark.parametrize("method", ["centroid", "knn_vote"])
def test_seed_cluster_comes_first_without_seeds_or_excluded(base, method):
    x, cluster, index = base
    seeds = np.flatnonzero(cluster == 3)[:20]
    exclude = np.flatnonzero(cluster == 3)[20:60]
    rows, scores = lookalike(index, x, seeds, 200, exclude_rows=exclude, method=method)
    assert len(rows) == 200 and rows.dtype == np.int64 and scores.dtype == np.float32
    assert len(np.unique(rows)) == 200
    assert not np.isin(rows, seeds).any() and not np.isin(rows, exclude).any()
    assert np.all(np.diff(scores) <= 0), "best first"
    assert np.mean(cluster[rows] == 3) >= 0.95


def test_knn_vote_serves_two_modes(base):
    x, cluster, index = base
    seeds = np.r_[np.flatnonzero(cluster == 1)[:15], np.flatnonzero(cluster == 7)[:15]]
    rows, _ = lookalike(index, x, seeds, 400, method="knn_vote")
    assert np.mean(np.isin(cluster[rows], [1, 7])) >= 0.95
    assert min(np.sum(cluster[rows] == 1), np.sum(cluster[rows] == 7)) >= 150


class HalfResults:
    """An approximate index stand-in: returns only the first half of the k asked for (rest -1)."""

    def __init__(self, index):
        self.index, self.ntotal, self.d, self.ks = index, index.ntotal, index.d, []

    def search(self, queries, k):
        self.ks.append(k)
        scores, ids = self.index.search(queries, k)
        ids[:, (k + 1) // 2 :] = -1
        return scores, ids


def test_doubles_k_until_enough_survive_the_filter(base):
    x, cluster, index = base
    seeds = np.flatnonzero(cluster == 0)[:10]
    exclude = np.flatnonzero(cluster == 0)[10:]  # the seeds' whole cluster is excluded
    half = HalfResults(index)
    rows, _ = lookalike(half, x, seeds, 100, exclude_rows=exclude)
    # k = size + seeds + excluded = 400 gives 200 results, all banned; doubled, 800 gives 100 more
    assert half.ks == [400, 800]
    assert len(rows) == 100
    assert not np.isin(rows, np.r_[seeds, exclude]).any()


def test_returns_what_exists_when_the_index_runs_out(base):
    x, _, index = base
    rows, _ = lookalike(index, x, np.arange(10), 2990, exclude_rows=np.arange(10, 100))
    assert len(rows) == 2900 and rows.min() >= 100


def test_lookalike_rejects_bad_requests(base):
    x, _, index = base
    with pytest.raises(ValueError, match="method 'magic' is unknown"):
        lookalike(index, x, [1], 10, method="magic")
    with pytest.raises(ValueError, match="at least one seed"):
        lookalike(index, x, [], 10)
    with pytest.raises(ValueError, match=r"seed rows must lie in 0\.\.2999"):
        lookalike(index, x, [5000], 10)


def test_audience_size_validation():
    assert audience_size(10, None, 100) == 10
    assert audience_size(None, 0.25, 100) == 25
    assert audience_size(None, 0.0001, 100) == 1
    assert audience_size(None, 1.0, 100) == 100
    with pytest.raises(ValueError, match="exactly one of size or fraction"):
        audience_size(10, 0.5, 100)
    with pytest.raises(ValueError, match="exactly one of size or fraction"):
        audience_size(None, None, 100)
    with pytest.raises(ValueError, match="size must be a positive number of customers, got 0"):
        audience_size(0, None, 100)
    with pytest.raises(ValueError, match="size 101 exceeds the 100 customers available"):
        audience_size(101, None, 100)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
            audience_size(None, bad, 100)


def test_auc_and_average_precision_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    positives = np.array([True, False, True, False])
    assert roc_auc(scores, positives) == pytest.approx(3 / 4)  # 3 of 4 positive-negative pairs ordered
    assert average_precision(scores, positives) == pytest.approx((1 / 1 + 2 / 3) / 2)
    # a tie counts one half in AUC; the tied pair is one threshold for AP (precision 1/2)
    assert roc_auc([0.5, 0.5, 0.1], [True, False, False]) == pytest.approx(0.75)
    assert average_precision([0.5, 0.5, 0.1], [True, False, False]) == pytest.approx(0.5)
    # never-retrieved customers scored -inf tie at the bottom
    ninf = -np.inf
    assert roc_auc([1.0, ninf, ninf], [False, True, True]) == pytest.approx(0.0)
    assert average_precision([1.0, ninf, ninf], [False, True, True]) == pytest.approx(2 / 3)


def test_evaluate_lookalike_per_method():
    positives = np.array([True, True, False, False, False])
    result = evaluate_lookalike(
        {"perfect": np.array([5.0, 4, 3, 2, 1]), "reversed": np.array([1.0, 2, 3, 4, 5])}, positives
    )
    assert result["perfect"] == {"roc_auc": 1.0, "average_precision": 1.0}
    assert result["reversed"]["roc_auc"] == 0.0
    assert result["reversed"]["average_precision"] == pytest.approx((1 / 4 + 2 / 5) / 2)
    assert math.isnan(evaluate_lookalike({"m": np.ones(2)}, np.zeros(2, bool))["m"]["roc_auc"])
    with pytest.raises(ValueError, match="m has \\(3,\\) scores for \\(5,\\) positives"):
        evaluate_lookalike({"m": np.ones(3)}, positives)


def test_nearest_seeds_is_exact_on_a_flat_index_and_never_returns_seeds_or_excluded():
    from engine.index.lookalike import nearest_seed_scores

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = build_index(x, np.arange(len(x)))
    seeds, excluded = np.arange(10), np.array([2999, 1234])
    rows, scores = lookalike(index, x, seeds, 50, exclude_rows=excluded, method="nearest_seeds")
    exact = nearest_seed_scores(x, seeds)
    exact[np.concatenate([seeds, excluded])] = -np.inf
    assert rows.tolist() == np.argsort(-exact, kind="stable")[:50].tolist()
    assert np.allclose(scores, exact[rows], atol=1e-6)
    # by hand for one row: the mean of its 3 highest similarities to the seeds
    assert np.isclose(exact[100], np.sort(x[100] @ x[seeds].T)[-3:].mean(), atol=1e-6)


def test_ivf_probes_more_lists_when_its_probed_lists_run_out():
    x, cluster = clusters(seed=1)
    index = build_index(x, np.arange(len(x)), kind="ivf", nlist=100, nprobe=1)
    inner = __import__("faiss").extract_index_ivf(index)
    seeds = np.flatnonzero(cluster == 3)[:20]
    size = 1000  # three clusters' worth: one probed list holds ~30
    rows, scores = lookalike(index, x, seeds, size)
    assert len(rows) == size and not np.isin(rows, seeds).any()
    assert np.all(np.diff(scores) <= 1e-6)  # best first
    assert (cluster[rows[:250]] == 3).mean() > 0.95  # the seeds' own cluster first
    assert inner.nprobe == 1  # the index's own setting is left alone
