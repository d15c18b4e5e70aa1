"""Spherical k-means, auto-k, assignment, id matching and ARI on planted clusters on the sphere."""

import numpy as np
import pytest

from engine.segment.kmeans import (
    adjusted_rand_index,
    assign,
    choose_k,
    match_to_previous,
    silhouette_score,
    spherical_kmeans,
)


def planted_blobs(n: int, k: int, d: int = 16, spread: float = 0.15, seed: int = 0):
    """vMF-like blobs: unit centres plus Gaussian noise, renormalised. -> (float32 [n, d], int64 [n], centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.arange(n) % k
    x = centres[truth] + spread * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), truth, centres.astype(np.float32)


def test_recovers_planted_blobs_with_canonical_ids():
    x, truth, _ = planted_blobs(3000, 6)
    centroids, labels = spherical_kmeans(x, 6, seed=0)
    assert centroids.shape == (6, 16) and centroids.dtype == np.float32
    assert labels.shape == (3000,) and labels.dtype == np.int64
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    assert adjusted_rand_index(labels, truth) >= 0.95
    sizes = np.bincount(labels, minlength=6)
    assert np.all(np.diff(sizes) <= 0), "segment 0 is the largest, sizes descend"


def test_same_seed_same_segments():
    x, _, _ = planted_blobs(2000, 5, seed=1)
    c1, l1 = spherical_kmeans(x, 8, seed=7)
    c2, l2 = spherical_kmeans(x, 8, seed=7)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(c1, c2)


def test_k_out_of_range_is_rejected():
    x, _, _ = planted_blobs(10, 2)
    with pytest.raises(ValueError, match="k=11"):
        spherical_kmeans(x, 11)


def test_assign_matches_brute_force_and_training_labels():
    x, _, _ = planted_blobs(1000, 4, seed=2)
    centroids, labels = spherical_kmeans(x, 4)
    got, sims = assign(x, centroids)
    sim_matrix = x @ centroids.T
    np.testing.assert_array_equal(got, sim_matrix.argmax(axis=1))
    np.testing.assert_array_equal(got, labels)
    np.testing.assert_allclose(sims, sim_matrix.max(axis=1), atol=1e-5)
    assert got.dtype == np.int64 and sims.dtype == np.float32


def test_choose_k_picks_planted_k():
    x, _, _ = planted_blobs(2400, 6, seed=3)
    k, scores = choose_k(x, k_min=2, k_max=10, seed=0)
    assert k == 6
    assert sorted(scores) == list(range(2, 11))
    assert scores[6] == max(scores.values())


def test_silhouette_matches_brute_force():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=60)
    labels[0] = 9  # a singleton cluster scores 0
    dist = 1 - x @ x.T
    s = np.zeros(60)
    for i in range(60):
        same = (labels == labels[i]) & (np.arange(60) != i)
        if not same.any():
            continue
        a = dist[i, same].mean()
        b = min(dist[i, labels == c].mean() for c in np.unique(labels) if c != labels[i])
        s[i] = (b - a) / max(a, b)
    assert silhouette_score(x.astype(np.float32), labels) == pytest.approx(s.mean(), abs=1e-5)


def test_match_to_previous_recovers_permutation_and_gives_fresh_ids():
    _, _, old = planted_blobs(10, 5, seed=5)
    perm = np.array([3, 0, 4, 1, 2])
    new = old[perm] + 0.01
    np.testing.assert_array_equal(match_to_previous(new, old), perm)

    rng = np.random.default_rng(6)
    extra = rng.normal(size=(2, 16)).astype(np.float32)
    grown = np.vstack([old[perm], extra])
    mapping = match_to_previous(grown, old)
    np.testing.assert_array_equal(mapping[:5], perm)
    np.testing.assert_array_equal(mapping[5:], [5, 6])

    shrunk = match_to_previous(old[[4, 1]], old)
    np.testing.assert_array_equal(shrunk, [4, 1])


def test_adjusted_rand_index_known_values():
    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 9, 9]) == pytest.approx(1.0)
    assert adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)
    assert adjusted_rand_index([0, 0, 0, 0], [0, 1, 2, 3]) == pytest.approx(0.0)
